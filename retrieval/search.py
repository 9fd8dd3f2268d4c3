"""Search: a dense leg, a lexical leg, and their fusion.

Each leg asks its index for candidates, keeps those whose document
generation is current and visible to the asker (the catalog decides, see
``CurrentGenerations``), and widens its query when too many are filtered
out. ``hybrid`` fuses the two candidate lists (``retrieval.fusion``). Every
hit carries its per-leg scores and ranks, so a result explains itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Literal, Protocol, get_args

import numpy as np

from retrieval.fusion import NORMALISE_DEPTH, Fusion
from retrieval.types import Hit, Scope

CurrentGenerations = Callable[[Iterable[str]], dict[str, int]]
LegQuery = Callable[[int], list[Hit]]
Mode = Literal["dense", "lexical", "hybrid"]

DENSE, LEXICAL, HYBRID = get_args(Mode)
MODES: tuple[str, ...] = get_args(Mode)


class Searchable(Protocol):
    """What search needs of a store: both legs' queries."""

    def query(self, vector: np.ndarray, k: int, scope: Scope | None = None) -> list[Hit]:
        """Dense nearest neighbours."""

    def lexical_query(self, text: str, k: int, scope: Scope | None = None) -> list[Hit]:
        """BM25 matches."""

# Hybrid search runs its lexical leg here while the dense leg embeds the query
# (ONNX Runtime and PyTorch leave the GIL while they compute).
_LEXICAL_LEGS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="kb-lexical-leg")

# Candidates per leg before fusion. Dense ones below NORMALISE_DEPTH weigh
# nothing. Lexical ones are cheap but not free (each is decoded while the query
# is embedded): at k=10, 50 scored as 100 did (SciFact nDCG@10 0.7136 against
# 0.7140, xquad-zh equal) and cut the hybrid p50 by about 0.6 ms.
CANDIDATES = {"dense": NORMALISE_DEPTH, "lexical": 50}


def search(
    store: Searchable, query: str, embed: Callable[[str], np.ndarray], k: int,
    current: CurrentGenerations, *, scope: Scope | None = None, mode: str = HYBRID,
    fusion: Fusion | None = None,
) -> list[Hit]:
    """The ``k`` best live chunks for ``query`` by ``mode``, best first."""
    depth = {leg: k if mode != HYBRID else max(k, n) for leg, n in CANDIDATES.items()}
    legs: dict[str, list[Hit]] = {}

    def lexical_leg() -> list[Hit]:
        return live_hits(
            lambda n: store.lexical_query(query, n, scope), depth[LEXICAL], current, k
        )

    # In hybrid mode the lexical leg runs while this thread embeds the query.
    pending = _LEXICAL_LEGS.submit(lexical_leg) if mode == HYBRID else None
    if mode in (DENSE, HYBRID):
        vector = embed(query)
        legs[DENSE] = live_hits(
            lambda n: store.query(vector, n, scope), depth[DENSE], current, k
        )
    if mode == LEXICAL:
        legs[LEXICAL] = lexical_leg()
    if pending is not None:
        legs[LEXICAL] = pending.result()
    if mode != HYBRID:
        return [_explained(h, mode, rank) for rank, h in enumerate(legs[mode][:k], 1)]
    # Each leg dropped its own repeats; the two may have kept different copies.
    fuse = (fusion or Fusion()).fuse
    hits = _distinct(fuse(query, legs[DENSE], legs[LEXICAL], limit=2 * k))
    if len(hits) < k:  # many copies among the best: fuse everything
        hits = _distinct(fuse(query, legs[DENSE], legs[LEXICAL]))
    return hits[:k]


def live_hits(
    query: LegQuery, k: int, current: CurrentGenerations, needed: int | None = None
) -> list[Hit]:
    """Up to ``k`` best hits of one leg whose document generation is current, best first.

    Chunks of a document being written, replaced or deleted may sit in an
    index for a moment; ``current`` (the catalog) decides what is live and
    visible, and the query widens when fewer than ``needed`` (default ``k``)
    are left. A chunk whose text repeats a better hit (the same file uploaded
    twice) is dropped. Fusion asks for more candidates than the ``k`` it
    needs: it must not pay for a wider query because a few were filtered out.
    """
    needed = k if needed is None else needed
    wanted = k
    live: list[Hit] = []
    for _ in range(4):
        hits = query(wanted)
        generations = current(h.document_id for h in hits)
        live = _distinct([h for h in hits if generations.get(h.document_id) == h.generation])
        if len(live) >= needed or len(hits) < wanted:
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
