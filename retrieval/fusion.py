"""Fusion of the dense and lexical legs into one ranking.

Placeholder convex combination over min-max normalised scores; tuned below.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from retrieval.types import Hit

DENSE, LEXICAL = "dense", "lexical"


@dataclass(frozen=True)
class Fusion:
    """Score-normalised convex combination: ``w·dense + (1-w)·lexical``."""

    dense_weight: float = 0.5

    def fuse(self, dense: list[Hit], lexical: list[Hit]) -> list[Hit]:
        """One list, best first, each hit with both legs' scores and ranks."""
        legs = {DENSE: dense, LEXICAL: lexical}
        weights = {DENSE: self.dense_weight, LEXICAL: 1.0 - self.dense_weight}
        merged: dict[str, Hit] = {}
        scores: dict[str, dict[str, float]] = {}
        ranks: dict[str, dict[str, int]] = {}
        fused: dict[str, float] = {}
        for leg, hits in legs.items():
            norm = _min_max([h.score for h in hits])
            for rank, (hit, value) in enumerate(zip(hits, norm, strict=True), 1):
                key = _key(hit)
                merged.setdefault(key, hit)
                scores.setdefault(key, {})[leg] = hit.score
                ranks.setdefault(key, {})[leg] = rank
                fused[key] = fused.get(key, 0.0) + weights[leg] * value
        order = sorted(fused, key=lambda key: -fused[key])
        return [
            replace(merged[key], score=fused[key], scores=scores[key], ranks=ranks[key])
            for key in order
        ]


def _key(hit: Hit) -> str:
    return f"{hit.document_id}:{hit.generation}:{hit.chunk_index}"


def _min_max(values: list[float]) -> list[float]:
    if not values:
        return []
    low, high = min(values), max(values)
    if high - low < 1e-9:
        return [1.0 for _ in values]
    return [(v - low) / (high - low) for v in values]
