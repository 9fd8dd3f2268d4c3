"""Search: a dense leg, a lexical leg, and their fusion.

Each leg asks its index for candidates, keeps those whose document
generation is current and visible to the asker (the catalog decides, see
``CurrentGenerations``), and widens its query when too many are filtered
out. ``hybrid`` fuses the two candidate lists (``retrieval.fusion``). Every
hit carries its per-leg scores and ranks, so a result explains itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Literal, Protocol, get_args

import numpy as np

from retrieval.fusion import NORMALISE_DEPTH, Fusion
from retrieval.types import Hit

CurrentGenerations = Callable[[Iterable[str]], dict[str, int]]
LegQuery = Callable[[int], list[Hit]]
Mode = Literal["dense", "lexical", "hybrid"]

DENSE, LEXICAL, HYBRID = get_args(Mode)
MODES: tuple[str, ...] = get_args(Mode)


class Searchable(Protocol):
    """What search needs of a store: both legs' queries."""

    def query(
        self, vector: np.ndarray, k: int, owners: Sequence[str] | None = None
    ) -> list[Hit]:
        """Dense nearest neighbours."""

    def lexical_query(
        self, text: str, k: int, owners: Sequence[str] | None = None
    ) -> list[Hit]:
        """BM25 matches."""

CANDIDATES = NORMALISE_DEPTH  # per leg, before fusion: enough for the other leg to promote a hit


def search(
    store: Searchable, query: str, embed: Callable[[str], np.ndarray], k: int,
    current: CurrentGenerations, *, owners: Sequence[str] | None = None, mode: str = HYBRID,
    fusion: Fusion | None = None,
) -> list[Hit]:
    """The ``k`` best live chunks for ``query`` by ``mode``, best first."""
    depth = k if mode != HYBRID else max(k, CANDIDATES)
    legs: dict[str, list[Hit]] = {}
    if mode in (DENSE, HYBRID):
        vector = embed(query)
        legs[DENSE] = live_hits(lambda n: store.query(vector, n, owners), depth, current)
    if mode in (LEXICAL, HYBRID):
        legs[LEXICAL] = live_hits(lambda n: store.lexical_query(query, n, owners), depth, current)
    if mode != HYBRID:
        return [_explained(h, mode, rank) for rank, h in enumerate(legs[mode][:k], 1)]
    # Each leg dropped its own repeats; the two may have kept different copies.
    return _distinct((fusion or Fusion()).fuse(query, legs[DENSE], legs[LEXICAL]))[:k]


def live_hits(query: LegQuery, k: int, current: CurrentGenerations) -> list[Hit]:
    """The ``k`` best hits of one leg whose document generation is current, best first.

    Chunks of a document being written, replaced or deleted may sit in an
    index for a moment; ``current`` (the catalog) decides what is live and
    visible, and the query widens when too many hits are filtered out. A
    chunk whose text repeats a better hit (the same file uploaded twice) is
    dropped.
    """
    wanted = k
    live: list[Hit] = []
    for _ in range(4):
        hits = query(wanted)
        generations = current(h.document_id for h in hits)
        live = _distinct([h for h in hits if generations.get(h.document_id) == h.generation])
        if len(live) >= k or len(hits) < wanted:
            break
        wanted *= 4
    return live[:k]


def _explained(hit: Hit, leg: str, rank: int) -> Hit:
    return replace(hit, scores={leg: hit.score}, ranks={leg: rank})


def _distinct(hits: list[Hit]) -> list[Hit]:
    """Hits in order, without a text seen in an earlier one."""
    seen: set[str] = set()
    out = []
    for hit in hits:
        if hit.text not in seen:
            seen.add(hit.text)
            out.append(hit)
    return out
