"""Retrieval metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest

from retrieval.evaluation import mrr_at, ndcg_at, recall_at


def test_metrics() -> None:
    relevant = {"a": 1, "b": 1}
    ranking = ["x", "a", "y", "b"]
    ideal = 1 + 1 / math.log2(3)
    assert ndcg_at(ranking, relevant, 10) == pytest.approx(
        (1 / math.log2(3) + 1 / math.log2(5)) / ideal
    )
    assert ndcg_at(["a", "b"], relevant, 10) == pytest.approx(1.0)
    assert recall_at(ranking, relevant, 2) == 0.5 and recall_at(ranking, relevant, 100) == 1.0
    assert mrr_at(ranking, relevant, 10) == 0.5 and mrr_at(["x"], relevant, 10) == 0.0
    assert ndcg_at(ranking, {}, 10) == 0.0

