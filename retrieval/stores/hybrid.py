"""The Chroma family's store: vectors in Chroma, terms in tantivy, written as one.

``HybridStore`` is the ``VectorStore`` the pipeline, the committers and
recovery write through, so the lexical leg follows exactly the same
generations and intents as the vectors: ``add`` writes both (the lexical
side committed before the call returns, so a catalog commit never names
chunks that are not durable in both), ``delete`` removes from both. A dense
query asks Chroma for ids and distances only and reads the rest from the
lexical index's copy of each chunk.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from retrieval.lexical import LexicalIndex, LexicalIndexDamaged
from retrieval.stores import ChunkVectors, Store, StoreKind
from retrieval.stores.chroma import ChromaBackend, ChromaStore
from retrieval.types import Chunk, Hit, Scope

log = logging.getLogger(__name__)


class HybridStore:
    """One Chroma collection and its lexical index, named alike."""

    pieces = True

    def __init__(self, vectors: ChromaStore, lexical: LexicalIndex) -> None:
        self.vectors, self.lexical = vectors, lexical
        self.name = vectors.name
        self._writing = threading.Lock()  # concurrent uploads write one at a time

    def add(self, chunks: Sequence[Chunk], vectors: ChunkVectors) -> None:
        """Write chunks to both indexes; durable in both when this returns."""
        with self._writing:
            self.vectors.add(chunks, vectors)
            self.lexical.add(chunks)
            self.lexical.commit()

    def delete(self, document_id: str, generation: int | None = None) -> None:
        """Remove a document's chunks (one generation, or all) from both indexes."""
        with self._writing:
            self.vectors.delete(document_id, generation)
            self.lexical.delete(document_id, generation)

    def delete_many(self, generations: Sequence[tuple[str, int]]) -> None:
        """Remove several (document, generation) chunk sets; one lexical commit."""
        with self._writing:
            self.vectors.delete_many(generations)
            self.lexical.delete_many(generations)

    def query(self, vector: np.ndarray, k: int, scope: Scope | None = None) -> list[Hit]:
        """Dense nearest neighbours, best first."""
        return self.hits(self.nearest(vector, k, scope))

    def nearest(self, vector: np.ndarray, k: int, scope: Scope | None = None
                ) -> list[tuple[str, float]]:
        """Chunk ids and cosine similarities of the ``k`` nearest chunks, from Chroma."""
        return self.vectors.nearest(vector, k, scope)

    def hits(self, scored: Sequence[tuple[str, float]]) -> list[Hit]:
        """Hits for these (chunk id, score) pairs, in their order, read from the copy the
        lexical index keeps (a fraction of what Chroma takes to return them)."""
        hits = self.lexical.hits(scored)
        if len(hits) < len(scored):  # a chunk not in the lexical index yet (being written)
            return self.vectors.hits(scored)
        return hits

    def lexical_query(self, text: str, k: int, scope: Scope | None = None) -> list[Hit]:
        """BM25 matches for ``text``."""
        return self.lexical.query(text, k, scope)

    def count(self) -> int:
        """Chunks in the vector store."""
        return self.vectors.count()

    def vector_count(self) -> int:
        """Vectors in the vector store (a chunk has one per dense piece)."""
        return self.vectors.vector_count()

    def stored(self, document_id: str, generation: int
               ) -> Iterator[tuple[list[Chunk], ChunkVectors]]:
        """One document generation's chunks and vectors (from the vector store)."""
        return self.vectors.stored(document_id, generation)

    def chunks(self) -> Iterator[list[Chunk]]:
        """Every stored chunk (from the vector store), a page at a time."""
        return self.vectors.chunks()

    def inventory(self) -> Counter[tuple[str, int]]:
        """Chunks per (document, generation) in the vector store."""
        return self.vectors.inventory()

    def lexical_count(self) -> int:
        """Chunks in the lexical index."""
        return self.lexical.count()

    def in_step(self, listed: int) -> bool:
        """Whether the lexical index holds as many chunks as the vector store. Counting
        the vector store's chunks reads every further piece's id (seconds at a million
        chunks), so a lexical index holding the ``listed`` chunks of the catalog, which
        lists what both indexes hold once ``recover`` has run, is taken as in step."""
        held = self.lexical.count()
        return held == listed or held == self.vectors.count()

    def rebuild_lexical(self, progress: Callable[[int], None]) -> None:
        """Refill the lexical index from the vector store's chunks."""

        def pages() -> Iterator[list[Chunk]]:
            for page in self.vectors.chunks():
                yield page
                progress(len(page))

        with self._writing:
            self.lexical.rebuild_from(pages())

    def close(self) -> None:
        """Release the lexical writer."""
        self.lexical.close()


class HybridBackend:
    """Opens and drops collections in Chroma together with their lexical folders."""

    def __init__(self, chroma: ChromaBackend, lexical_root: Path) -> None:
        self.chroma, self.lexical_root = chroma, lexical_root
        self.kind: StoreKind = "chroma"
        self.where = chroma.where

    def open(self, name: str, dimension: int = 0) -> HybridStore:
        """Open (or create) both halves; a damaged lexical half is recreated empty.

        Chroma takes its dimension from the first vectors written.
        """
        path = self.lexical_root / name
        try:
            lexical = LexicalIndex(path)
        except LexicalIndexDamaged as exc:
            log.warning("%s; rebuilding it from the vector store", exc)
            LexicalIndex.destroy(path)
            lexical = LexicalIndex(path)
        return HybridStore(self.chroma.open(name), lexical)

    def drop(self, name: str, store: Store | None = None) -> None:
        """Delete a collection and its lexical folder."""
        if store is not None:
            store.close()
        self.chroma.drop(name)
        LexicalIndex.destroy(self.lexical_root / name)

    def sweep(self, keep: str) -> None:
        """Remove the files of collections that are gone (a crash mid-switch)."""
        self.chroma.sweep_files()
        if self.lexical_root.is_dir():
            for path in self.lexical_root.iterdir():
                if path.name != keep:
                    LexicalIndex.destroy(path)

    def names(self) -> list[str]:
        """Names of the Chroma collections."""
        return self.chroma.names()

    def heartbeat(self) -> None:
        """Raise UpstreamUnavailable when Chroma does not answer."""
        self.chroma.heartbeat()

    def close(self) -> None:
        """Release the Chroma client."""
        self.chroma.close()
