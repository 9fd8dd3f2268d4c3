"""Search over the vector store."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from retrieval.store import VectorStore
from retrieval.types import Hit

CurrentGenerations = Callable[[Iterable[str]], dict[str, int]]


def dense_search(
    store: VectorStore, vector: np.ndarray, k: int, current: CurrentGenerations,
    owners: Sequence[str] | None = None,
) -> list[Hit]:
    """The ``k`` best chunks whose document generation is current, best first.

    Vectors of a document being written, replaced or deleted may sit in the
    store for a moment; ``current`` (the catalog) decides what is live and
    visible, and the query widens when too many hits are filtered out.
    ``owners`` narrows the store query to the chunks the asker may see. A chunk
    whose text repeats a better hit (the same file uploaded twice) is dropped.
    """
    wanted = k
    live: list[Hit] = []
    for _ in range(4):
        hits = store.query(vector, wanted, owners)
        generations = current(h.document_id for h in hits)
        live = _distinct([h for h in hits if generations.get(h.document_id) == h.generation])
        if len(live) >= k or len(hits) < wanted:
            break
        wanted *= 4
    return live[:k]


def _distinct(hits: list[Hit]) -> list[Hit]:
    """Hits in order, without a text seen in an earlier one."""
    seen: set[str] = set()
    out = []
    for hit in hits:
        if hit.text not in seen:
            seen.add(hit.text)
            out.append(hit)
    return out
