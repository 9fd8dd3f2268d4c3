"""Search: a dense leg, a lexical leg, and their fusion.

Each leg asks its index for candidates, keeps those whose document
generation is current and visible to the asker (the catalog decides, see
``CurrentGenerations``), and widens its query when too many are filtered
out. ``hybrid`` fuses the two candidate lists (``retrieval.fusion``); its
dense leg brings chunk ids and scores alone, and only those that make the
results without the lexical leg having found them are read. Every hit
carries its per-leg scores and ranks, so a result explains itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Literal, Protocol, TypeVar, get_args

import numpy as np

from retrieval.fusion import NORMALISE_DEPTH, Fusion, Ranked
from retrieval.types import Candidate, Hit, Scope

CurrentGenerations = Callable[[Iterable[str]], dict[str, int]]
Mode = Literal["dense", "lexical", "hybrid"]

DENSE, LEXICAL, HYBRID = get_args(Mode)
MODES: tuple[str, ...] = get_args(Mode)


class Searchable(Protocol):
    """What search needs of a store: both legs' queries."""

    def query(self, vector: np.ndarray, k: int, scope: Scope | None = None) -> list[Hit]:
        """Dense nearest neighbours."""

    def nearest(self, vector: np.ndarray, k: int, scope: Scope | None = None
                ) -> list[tuple[str, float]]:
        """Dense nearest neighbours' chunk ids and scores alone."""

    def hits(self, scored: Sequence[tuple[str, float]]) -> list[Hit]:
        """The chunks of these (chunk id, score) pairs, as hits."""

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

R = TypeVar("R", Hit, Candidate, Ranked)


def search(
    store: Searchable, query: str, embed: Callable[[str], np.ndarray], k: int,
    current: CurrentGenerations, *, scope: Scope | None = None, mode: str = HYBRID,
    fusion: Fusion | None = None,
) -> list[Hit]:
    """The ``k`` best live chunks for ``query`` by ``mode``, best first."""
    if mode not in MODES:
        raise ValueError(f"search mode must be one of {', '.join(MODES)}, not {mode!r}")
    depth = {leg: k if mode != HYBRID else max(k, n) for leg, n in CANDIDATES.items()}

    def lexical_leg() -> list[Hit]:
        return live_hits(
            lambda n: store.lexical_query(query, n, scope), depth[LEXICAL], current, k
        )

    # In hybrid mode the lexical leg runs while this thread embeds the query.
    pending = _LEXICAL_LEGS.submit(lexical_leg) if mode == HYBRID else None
    if mode == LEXICAL:
        return _explained(lexical_leg()[:k], LEXICAL)
    vector = embed(query)
    if pending is None:
        return _explained(live_hits(lambda n: store.query(vector, n, scope), k, current), DENSE)
    # Fusion needs only the dense leg's ids and scores: on SciFact 0.3 of the 20 best
    # fused chunks (k=10) were not among the lexical leg's hits, which carry their
    # text; reading all 30 dense ones cost 0.7 ms a search.
    dense = live_hits(
        lambda n: [Candidate.of(i, score) for i, score in store.nearest(vector, n, scope)],
        depth[DENSE], current, k,
    )
    lexical = pending.result()
    # Repeated texts (the same file stored twice) go once the results are read: the
    # dense leg's candidates have no text yet, and the legs may keep different copies.
    fuse = (fusion or Fusion()).fuse
    hits = _distinct(_read(store, fuse(query, dense, lexical, limit=2 * k)))
    if len(hits) < k:  # many copies among the best: fuse everything
        hits = _distinct(_read(store, fuse(query, dense, lexical)))
    return hits[:k]


def live_hits(
    query: Callable[[int], list[R]], k: int, current: CurrentGenerations,
    needed: int | None = None,
) -> list[R]:
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
    live: list[R] = []
    for _ in range(4):
        hits = query(wanted)
        generations = current(h.document_id for h in hits)
        live = _distinct([h for h in hits if generations.get(h.document_id) == h.generation])
        if len(live) >= needed or len(hits) < wanted:
            break
        wanted *= 4
    return live[:k]


def _read(store: Searchable, ranked: list[Ranked]) -> list[Hit]:
    """Fused results as hits, in order: the candidates among them read from the store
    in one lookup (one removed meanwhile is left out)."""
    wanted = [(r.id, r.score) for r in ranked if isinstance(r, Candidate)]
    found = {hit.id: hit for hit in store.hits(wanted)} if wanted else {}
    hits = []
    for r in ranked:
        if isinstance(r, Candidate):
            if r.id not in found:
                continue
            r = replace(found[r.id], score=r.score, scores=r.scores, ranks=r.ranks)
        hits.append(r)
    return hits


def _explained(hits: list[Hit], leg: str) -> list[Hit]:
    return [replace(h, scores={leg: h.score}, ranks={leg: rank}) for rank, h in enumerate(hits, 1)]


def _distinct(hits: list[R]) -> list[R]:
    """Hits in order, without a text seen in an earlier one (a candidate's text is not
    known yet: it is kept)."""
    seen: set[str] = set()
    out = []
    for hit in hits:
        key = hit.text if isinstance(hit, Hit) else hit.id
        if key not in seen:
            seen.add(key)
            out.append(hit)
    return out
