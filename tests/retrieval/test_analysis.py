"""Lexical analysis: the same terms for a document and for a query about it, in any script."""

from __future__ import annotations

from retrieval.analysis import analyze


def test_english_is_lowercased_stemmed_and_without_stop_words() -> None:
    terms = analyze("The Running of the Bulls in Pamplona")
    assert terms == ["run", "bull", "pamplona"]
    assert set(analyze("bulls running")) <= set(terms)


def test_chinese_two_character_words_are_terms() -> None:
    terms = analyze("我们的系统支持全文检索和向量检索。")
    assert "检索" in terms and "系统" in terms
    assert "的" not in [t for t in terms if len(t) > 1]  # function words are not words here
    # A query with another phrasing still shares the word, and single characters match in part.
    assert "检索" in analyze("怎么检索文件？")
    assert "检" in analyze("检")


def test_japanese_and_korean_become_character_bigrams() -> None:
    assert "ひら" in analyze("ひらがな") and "がな" in analyze("ひらがな")
    assert "검색" in analyze("검색 엔진")


def test_mixed_language_text_keeps_each_run() -> None:
    terms = analyze("Qwen3 模型的检索 results, café")
    assert {"qwen3", "检索", "result", "cafe"} <= set(terms)


def test_nothing_to_index() -> None:
    assert analyze("") == [] and analyze("the of and , .") == []
