"""Text analysis for the lexical index: the same function for documents and queries.

Text is cut into runs by script, and each run is analysed in the way that
fits its language:

- Chinese (Han characters): jieba's search-mode words (a 2-character word
  like 检索 is a term of its own), minus function and question words, plus
  every character and character bigram, so a name jieba cuts differently, or
  a word it does not know, still matches in part;
- Japanese kana and Korean hangul: character bigrams;
- everything else: words, lower-cased, accents folded, English stop words
  dropped, Snowball-stemmed (tantivy's own analyzer, in Rust).

Mixed text works run by run. jieba here is ``rjieba`` (jieba-rs: the same
dictionary and algorithm, about ten times faster than the Python package).
"""

from __future__ import annotations

import functools
import re

import rjieba
import tantivy

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_KANA = "\u3040-\u30ff\u31f0-\u31ff"
_HANGUL = "\uac00-\ud7af\u1100-\u11ff\u3130-\u318f"
_RUNS = re.compile(f"([{_HAN}]+)|([{_KANA}{_HANGUL}]+)")
MAX_TOKEN_CHARS = 40

# Function and question words: frequent in questions, and matching them in a
# passage says nothing about whether it answers (什么, 多少, 哪 ...).
CHINESE_STOP_WORDS = frozenset(
    "的 了 着 是 在 和 与 及 或 有 被 把 对 中 上 下 也 都 而 之 其 这 那 这个 那个 这些 那些 "
    "什么 哪 哪里 哪儿 哪个 哪些 哪一 多少 谁 为什么 为何 如何 怎么 怎样 怎么样 吗 呢 吧 啊 几 "
    "何 何时 是否 一个 为 以 于 由 从 到 向 将 就 还 又 所 等 个".split()
)


@functools.cache
def _words() -> tantivy.TextAnalyzer:
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(MAX_TOKEN_CHARS))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.ascii_fold())
        .filter(tantivy.Filter.stopword("english"))
        .filter(tantivy.Filter.stemmer("english"))
        .build()
    )


def analyze(text: str) -> list[str]:
    """The index terms of ``text``, in order (a term may repeat)."""
    terms: list[str] = []
    words = _words()
    end = 0
    for match in _RUNS.finditer(text):
        if match.start() > end:
            terms += words.analyze(text[end : match.start()])
        han, other = match.groups()
        terms += _chinese(han) if han else _bigrams(other)
        end = match.end()
    if end < len(text):
        terms += words.analyze(text[end:])
    return terms


def _chinese(run: str) -> list[str]:
    words = [w for w in rjieba.cut_for_search(run) if w not in CHINESE_STOP_WORDS]
    return words + list(run) + (_bigrams(run) if len(run) > 1 else [])


def _bigrams(run: str) -> list[str]:
    if len(run) == 1:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


def term_coverage(query: str, text: str) -> float:
    """Share of the query's distinct terms that occur in ``text`` (0 when it has none)."""
    wanted = set(analyze(query))
    return len(wanted & set(analyze(text))) / len(wanted) if wanted else 0.0
