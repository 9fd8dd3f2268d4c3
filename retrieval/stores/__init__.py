"""Where chunks live: the store protocols and the factory that picks one.

Two families implement them:

- ``chroma`` (``stores.chroma`` for the vectors, ``stores.hybrid`` pairing each
  collection with a tantivy index for the lexical leg): embedded under the
  data directory, or a ``chroma run`` server;
- ``milvus`` (``stores.milvus``): one Milvus collection holds the vectors and
  the BM25 leg; milvus-lite under the data directory, or a Milvus server or
  cluster by URL.

``VectorStore`` is what the pipeline and the committers write through;
``Store`` adds what search and the service need; ``StoreBackend`` opens,
lists and drops a family's collections.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import numpy as np

from retrieval.errors import UpstreamUnavailable
from retrieval.types import Chunk, Hit, Scope

StoreKind = Literal["chroma", "milvus"]
# Each chunk's vector (a row), or the vectors of its dense pieces (a 2-d array, one row
# a piece; ``ingest.pieces``): the chunk's dense score is its best piece's.
ChunkVectors = np.ndarray | Sequence[np.ndarray]
SHARED = ""  # the owner stored on chunks of documents everyone may see
RETRY_DELAYS = (0.5, 1.0, 2.0)  # seconds between attempts when a store server drops out


class VectorStore(Protocol):
    """Where chunk vectors live."""

    pieces: bool  # whether a chunk may have several vectors (see ``ChunkVectors``)

    def add(self, chunks: Sequence[Chunk], vectors: ChunkVectors) -> None:
        """Write chunks with their vectors (upsert by chunk id)."""

    def delete(self, document_id: str, generation: int | None = None) -> None:
        """Remove a document's chunks: one generation, or all of them."""

    def delete_many(self, generations: Sequence[tuple[str, int]]) -> None:
        """Remove several (document, generation) chunk sets."""

    def query(self, vector: np.ndarray, k: int, scope: Scope | None = None) -> list[Hit]:
        """The ``k`` nearest chunks in ``scope`` (everything when ``None``), best first."""

    def count(self) -> int:
        """Number of chunks stored (it may read every record: not for every start)."""

    def vector_count(self) -> int:
        """Vectors stored, a chunk's further dense pieces included; a constant-time count."""

    def stored(self, document_id: str, generation: int
               ) -> Iterator[tuple[list[Chunk], ChunkVectors]]:
        """One document generation's chunks and their vectors, in pages."""


class Store(VectorStore, Protocol):
    """A collection with both search legs, as the service uses it."""

    name: str

    def nearest(self, vector: np.ndarray, k: int, scope: Scope | None = None
                ) -> list[tuple[str, float]]:
        """``query``'s chunk ids and scores alone, without the chunks."""

    def hits(self, scored: Sequence[tuple[str, float]]) -> list[Hit]:
        """Hits for these (chunk id, score) pairs, in their order; ids not stored left out."""

    def lexical_query(self, text: str, k: int, scope: Scope | None = None) -> list[Hit]:
        """The ``k`` best BM25 matches for ``text`` in ``scope``, best first."""

    def chunks(self) -> Iterator[list[Chunk]]:
        """Every stored chunk, without vectors, a page at a time."""

    def inventory(self) -> Counter[tuple[str, int]]:
        """Chunks per (document id, generation): what the catalog must agree with."""

    def lexical_count(self) -> int:
        """Chunks the lexical leg can find."""

    def in_step(self, listed: int) -> bool:
        """Whether the lexical leg holds every stored chunk; ``listed``, the chunks the
        catalog lists, is taken as the stored count when the lexical leg holds that many."""

    def rebuild_lexical(self, progress: Callable[[int], None]) -> None:
        """Refill the lexical leg from the stored chunks, reporting chunks done."""

    def close(self) -> None:
        """Release what this collection holds open."""


class StoreBackend(Protocol):
    """A store family's client: opens, lists and drops collections."""

    kind: StoreKind  # the family, as KB_STORE names it
    where: str  # "embedded", or the server's address, for messages

    def open(self, name: str, dimension: int) -> Store:
        """Open a collection, creating it for vectors of ``dimension`` if it is new."""

    def drop(self, name: str, store: Store | None = None) -> None:
        """Delete a collection (closing ``store``, its open handle) if it exists."""

    def sweep(self, keep: str) -> None:
        """Remove what collections that are gone left behind (a crash mid-switch)."""

    def names(self) -> list[str]:
        """Names of all collections."""

    def heartbeat(self) -> None:
        """Raise UpstreamUnavailable when the store does not answer."""

    def close(self) -> None:
        """Release the client."""


def open_backend(
    kind: StoreKind, data_dir: Path, *, chroma_url: str | None = None,
    milvus_uri: str | None = None, milvus_token: str | None = None,
) -> StoreBackend:
    """The store family the settings name, embedded under ``data_dir`` unless given a server."""
    if kind == "milvus":
        from retrieval.stores.milvus import MilvusBackend

        return MilvusBackend(milvus_uri or str(data_dir / "milvus.db"), token=milvus_token)
    from retrieval.stores.chroma import ChromaBackend
    from retrieval.stores.hybrid import HybridBackend

    chroma = ChromaBackend(path=data_dir / "chroma", url=chroma_url)
    return HybridBackend(chroma, data_dir / "lexical")


T = TypeVar("T")


def retrying(
    transient: Callable[[Exception], bool], unreachable: str
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Retry an idempotent store method on ``transient`` errors, then raise UpstreamUnavailable.

    ``unreachable`` is the message, formatted with the store's ``where`` and the error.
    """

    def decorate(method: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(method)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> T:
            for delay in (*RETRY_DELAYS, None):
                try:
                    return method(self, *args, **kwargs)
                except Exception as exc:
                    if not transient(exc):
                        raise
                    if delay is None:
                        raise UpstreamUnavailable(
                            unreachable.format(where=self.where, error=exc)
                        ) from exc
                    time.sleep(delay)
            raise AssertionError("unreachable")

        return wrapper

    return decorate
