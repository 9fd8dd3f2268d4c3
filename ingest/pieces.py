"""Dense pieces: a chunk embedded as several vectors, each within what the model learned.

all-MiniLM-L6-v2 (the packaged model) was trained on inputs of at most 128
word pieces; a 256-token chunk embedded whole is averaged past what it saw.
Cut into pieces of about equal size (title in front of each, as the chunk
has it), each piece gets its own vector and the chunk scores as its best
piece; the chunk stays the unit the lexical leg, answers and citations use.
On SciFact this lifted dense nDCG@10 from 0.664 to 0.689 and hybrid from
0.732 to 0.743 at the same embedding cost (``benchmarks/dense_pieces.py``).
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from retrieval.embedders import Embedder, tokenizer_file
from retrieval.types import Chunk

DEFAULT_PIECE_TOKENS = 128  # the packaged model's training length
# Where a piece may end: after a run of spaces, or after any CJK character or
# punctuation mark (Chinese and Japanese put no spaces between words, and the
# model reads each Han character as a token of its own).
BOUNDARY = re.compile(
    "\\s+|[\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
    "\uff00-\uffef]"
)
MIN_ROOM = 16  # tokens a piece keeps for its text however long the title is


class PieceCutter:
    """Cuts chunks into dense pieces of at most ``size`` tokens of the embedding model.

    With the model's tokenizer file at hand (``starts``: each token's first character)
    a chunk is tokenized once; without, each candidate cut is counted (slower).
    """

    def __init__(self, size: int, count: Callable[[str], int],
                 starts: Callable[[list[str]], list[list[int]]] | None = None) -> None:
        self.size, self._count, self._starts = size, count, starts

    @classmethod
    def of(cls, embedder: Embedder, size: int) -> PieceCutter:
        """A cutter counting in ``embedder``'s tokens."""
        path = embedder.tokenizer_path
        return cls(size, embedder.count_tokens, None if path is None else token_starts(path))

    def split(self, chunks: Sequence[Chunk]) -> list[list[str]]:
        """What is embedded for each chunk: each piece's text with the chunk's title in
        front (the chunk's own indexed text when it is one piece, or ``size`` is 0)."""
        if self.size <= 0:
            return [[c.indexed_text] for c in chunks]
        begins = self._starts([c.text for c in chunks]) if self._starts else [None] * len(chunks)
        return [[replace(chunk, text=piece).indexed_text for piece in self.pieces(chunk, b)]
                for chunk, b in zip(chunks, begins, strict=True)]

    def pieces(self, chunk: Chunk, begins: list[int] | None = None) -> list[str]:
        """``chunk.text`` in ``ceil(tokens / room)`` pieces of about equal token counts,
        where room is ``size`` less the title's tokens; cut at the word boundary nearest
        each equal share. The pieces are contiguous: together they are the whole text.
        ``begins``: where each token of the text begins, when known."""
        text = chunk.text
        title = self._count(chunk.indexed_text[: len(chunk.indexed_text) - len(text)])
        if begins is None and self._starts is not None:
            [begins] = self._starts([text])
        prefix, total = self._prefix(text, begins)
        n = math.ceil(total / max(MIN_ROOM, self.size - title))
        if n <= 1:
            return [text]
        ends = [m.end() for m in BOUNDARY.finditer(text)] or list(range(1, len(text)))
        cuts = [0]
        for k in range(1, n):
            at = _nearest(ends, prefix, total * k / n, cuts[-1])
            if at is not None and at < len(text):
                cuts.append(at)
        cuts.append(len(text))
        return [text[a:b] for a, b in zip(cuts, cuts[1:], strict=False) if text[a:b].strip()]

    def texts(self, chunk: Chunk) -> list[str]:
        """What is embedded for one chunk (see ``split``)."""
        [texts] = self.split([chunk])
        return texts

    def _prefix(self, text: str, begins: list[int] | None
                ) -> tuple[Callable[[int], int], int]:
        """Tokens before a character position of ``text``, and in all of it."""
        if begins is not None:
            return (lambda at: bisect.bisect_left(begins, at)), len(begins)
        seen: dict[int, int] = {}

        def prefix(at: int) -> int:
            if at not in seen:
                seen[at] = self._count(text[:at])
            return seen[at]

        return prefix, self._count(text)


def token_starts(path: Path) -> Callable[[list[str]], list[list[int]]]:
    """Where each token of each text begins, by the tokenizer file at ``path`` (a batch
    of texts is tokenized on all cores)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file(path)))
    tokenizer.no_truncation()
    tokenizer.no_padding()

    def starts(texts: list[str]) -> list[list[int]]:
        encoded = tokenizer.encode_batch(texts, add_special_tokens=False)
        return [[a for a, _ in e.offsets] for e in encoded]

    return starts


def _nearest(positions: Sequence[int], prefix: Callable[[int], int], target: float,
             after: int) -> int | None:
    """The position after ``after`` whose prefix token count is nearest ``target``."""
    options = positions[bisect.bisect_right(positions, after):]
    if not options:
        return None
    lo, hi = 0, len(options) - 1
    while lo < hi:  # first option whose prefix reaches the target
        mid = (lo + hi) // 2
        if prefix(options[mid]) < target:
            lo = mid + 1
        else:
            hi = mid
    near = options[max(0, lo - 1): lo + 1]
    return min(near, key=lambda p: abs(prefix(p) - target))


def grouped(vectors: np.ndarray, sizes: Sequence[int]) -> list[np.ndarray]:
    """Rows of ``vectors`` cut into consecutive groups of ``sizes`` rows (each chunk's)."""
    bounds = np.cumsum([0, *sizes])
    return [vectors[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
