"""Fusion: min-max convex combination with a dense weight that follows the query's script."""

from __future__ import annotations

import pytest

from retrieval.fusion import Fusion, covered_share, script_of
from retrieval.types import Hit


def hit(doc: str, score: float) -> Hit:
    """A one-chunk hit."""
    return Hit(doc, f"{doc}.txt", 0, f"text of {doc}", score)


def test_scripts_of_letters() -> None:
    assert [script_of(c) for c in "aé检か한ж1 ."] == [
        "latin", "latin", "cjk", "cjk", "cjk", "other", None, None, None,
    ]
    assert covered_share("what is 检索?", frozenset({"latin"})) == pytest.approx(6 / 8)
    assert covered_share("检索", None) == 1.0 and covered_share("2024!", frozenset()) == 1.0


def test_the_dense_weight_falls_for_queries_the_model_cannot_read() -> None:
    english_only = Fusion(0.5, 0.1, frozenset({"latin"}))
    assert english_only.weight("whales") == pytest.approx(0.5)
    assert english_only.weight("鲸鱼有多大") == pytest.approx(0.1)
    assert 0.1 < english_only.weight("Qwen3 模型") < 0.5
    assert Fusion(0.5, 0.1, None).weight("鲸鱼有多大") == pytest.approx(0.5)


def test_fused_order_and_explanation() -> None:
    dense = [hit("a", 0.9), hit("b", 0.8), hit("c", 0.1)]
    lexical = [hit("b", 12.0), hit("d", 6.0), hit("e", 3.0)]
    fused = Fusion(0.5).fuse("q", dense, lexical)
    assert [h.document_id for h in fused] == ["b", "a", "d", "e", "c"]
    b = fused[0]
    assert b.scores == {"dense": 0.8, "lexical": 12.0} and b.ranks == {"dense": 2, "lexical": 1}
    assert fused[1].ranks == {"dense": 1}  # not among the lexical candidates
    # dense: min-max between the best and the last; lexical: a share of the best.
    assert b.score == pytest.approx(0.5 * (0.8 - 0.1) / 0.8 + 0.5 * 1.0)
    assert fused[2].score == pytest.approx(0.5 * 6 / 12)


def test_normalisation_does_not_depend_on_how_many_hits_were_asked_for() -> None:
    dense = [hit(f"d{i}", 1.0 - i / 1000) for i in range(400)]
    lexical = [hit(f"d{i}", 40.0 - i / 20) for i in range(0, 400, 2)]
    deep = {h.document_id: h.score for h in Fusion().fuse("q", dense, lexical)}
    shallow = Fusion().fuse("q", dense[:30], lexical[:100])
    assert len(shallow) == 115
    assert all(deep[h.document_id] == pytest.approx(h.score) for h in shallow)


def test_a_leg_with_nothing_leaves_the_other_in_its_order() -> None:
    lexical = [hit("x", 5.0), hit("y", 2.0)]
    assert [h.document_id for h in Fusion().fuse("q", [], lexical)] == ["x", "y"]
