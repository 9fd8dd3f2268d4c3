"""Chunks and their vectors in a Chroma collection (embedded, or a ``chroma run`` server).

``ChromaStore`` adapts one collection to the vector half of the store
protocols (``stores.hybrid`` adds the lexical leg). Chroma's own types stay
in this module.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from retrieval.errors import UpstreamUnavailable
from retrieval.stores import SHARED, ChunkVectors, retrying
from retrieval.types import Chunk, Hit, Scope


def _disconnected(exc: Exception) -> bool:
    return isinstance(exc, httpx.TransportError)


_resilient = retrying(
    _disconnected, "Chroma server unreachable at {where}: {error}; is it running? (KB_CHROMA_URL)"
)

# A chunk with several dense pieces has a record per piece: the chunk's own (its id, all
# its metadata, PIECES saying how many) and one per further piece (PIECE set, id
# ``<chunk id>/<n>``), which carries only what deletes and scope filters read.
PIECES, PIECE, PIECE_MARK = "pieces", "piece", "/"
CHUNKS = {PIECE: {"$ne": True}}  # the chunks' own records (true too where PIECE is absent)
MORE_PIECES = {PIECE: True}
PIECE_SPREAD = 3  # records fetched per chunk wanted, so k distinct chunks come back
MAX_SPREAD = 24


class ChromaStore:
    """One Chroma collection with cosine distance.

    Every operation is idempotent (upsert by id, delete by filter, reads), so
    each is retried briefly when a Chroma server drops the connection.
    """

    pieces = True

    def __init__(self, collection: Any, max_batch: int, where: str = "embedded") -> None:
        self._collection = collection
        self._max_batch = max_batch
        self.name: str = collection.name
        self.where = where
        # Whether any chunk has several records: searches then fetch more records.
        self._pieces = bool(self._more_pieces(limit=1))

    @_resilient
    def _more_pieces(self, limit: int | None = None) -> list[str]:
        """Ids of the records of chunks' further pieces."""
        return list(self._collection.get(where=MORE_PIECES, include=[], limit=limit)["ids"])

    @_resilient
    def add(self, chunks: Sequence[Chunk], vectors: ChunkVectors) -> None:
        """Upsert a record per chunk, and one per further dense piece, in slices no larger
        than Chroma's maximum batch size."""
        ids: list[str] = []
        rows: list[np.ndarray] = []
        metadatas: list[dict[str, Any]] = []
        for chunk, vector in zip(chunks, vectors, strict=True):
            own = np.atleast_2d(vector)
            ids += [piece_id(chunk.id, p) for p in range(len(own))]
            rows += list(own)
            metadatas += _records(chunk, len(own))
            self._pieces = self._pieces or len(own) > 1
        for start in range(0, len(ids), self._max_batch):
            end = start + self._max_batch
            self._collection.upsert(ids=ids[start:end], embeddings=np.asarray(rows[start:end]),
                                    metadatas=metadatas[start:end])

    @_resilient
    def delete(self, document_id: str, generation: int | None = None) -> None:
        """Delete by metadata filter, so no id bookkeeping is needed."""
        where: dict[str, Any] = {"document_id": document_id}
        if generation is not None:
            where = {"$and": [where, {"generation": generation}]}
        self._collection.delete(where=where)

    def delete_many(self, generations: Sequence[tuple[str, int]]) -> None:
        """Delete each (document, generation)."""
        for document_id, generation in generations:
            self.delete(document_id, generation)

    def query(self, vector: np.ndarray, k: int, scope: Scope | None = None) -> list[Hit]:
        """Nearest neighbours in ``scope`` (everything when ``None``); score is cosine
        similarity (1 - distance), of the chunk's best piece."""
        return self.hits(self.nearest(vector, k, scope))

    def hits(self, scored: Sequence[tuple[str, float]]) -> list[Hit]:
        """Hits for these (chunk id, cosine) pairs, in their order; an id not stored is
        left out."""
        if not scored:
            return []
        found = self._by_ids([i for i, _ in scored])
        rows = {i: (text, meta) for i, text, meta in
                zip(found["ids"], found["documents"], found["metadatas"], strict=True)}
        return [_hit(*rows[i], 1.0 - score) for i, score in scored if i in rows]

    @_resilient
    def _by_ids(self, ids: list[str]) -> Any:
        return self._collection.get(ids=ids, include=["documents", "metadatas"])

    @_resilient
    def nearest(self, vector: np.ndarray, k: int, scope: Scope | None = None
                ) -> list[tuple[str, float]]:
        """Chunk ids and cosine similarities of the ``k`` nearest chunks (each by its best
        piece), without their text and metadata (a query that returns those costs twice
        as much)."""
        if k <= 0 or (scope is not None and scope.nothing):
            return []
        spread = PIECE_SPREAD if self._pieces else 1
        while True:
            result = self._collection.query(
                query_embeddings=[vector], n_results=k * spread, where=_where(scope),
                include=["distances"],
            )
            ids = result["ids"][0]
            best: dict[str, float] = {}
            for i, distance in zip(ids, result["distances"][0], strict=True):
                best.setdefault(i.partition(PIECE_MARK)[0], 1.0 - float(distance))
            self._pieces = self._pieces or len(best) < len(ids)
            # Too many pieces of the same chunks to make k: fetch deeper, unless that was all.
            if len(best) >= k or len(ids) < k * spread or spread >= MAX_SPREAD:
                return list(best.items())[:k]
            spread *= 2

    @_resilient
    def count(self) -> int:
        """Number of chunks in the collection (a chunk's further pieces not counted). It
        reads the id of every further piece: about 1 s for 200,000 of them."""
        return self.vector_count() - len(self._more_pieces())

    @_resilient
    def vector_count(self) -> int:
        """Records in the collection: one per chunk and one per further piece."""
        return int(self._collection.count())

    def stored(self, document_id: str, generation: int
               ) -> Iterator[tuple[list[Chunk], ChunkVectors]]:
        """One document generation's chunks with their vectors (their pieces' when they
        have several), a page of at most max batch chunks."""
        where = {"$and": [{"document_id": document_id}, {"generation": generation}, CHUNKS]}
        offset = 0
        while True:
            page = self._get(where, offset)
            if not page["ids"]:
                return
            rows = zip(page["documents"], page["metadatas"], strict=True)
            chunks = [_chunk(text, meta) for text, meta in rows]
            vectors = np.asarray(page["embeddings"], dtype=np.float32)
            counts = [int(meta.get(PIECES, 1)) for meta in page["metadatas"]]
            yield chunks, (vectors if max(counts) == 1 else self._with_pieces(
                page["ids"], vectors, counts))
            offset += len(chunks)

    def _with_pieces(self, ids: list[str], firsts: np.ndarray, counts: list[int]
                     ) -> list[np.ndarray]:
        """Each chunk's piece vectors: its first (the chunk's record) and the rest."""
        more = [piece_id(i, p) for i, n in zip(ids, counts, strict=True) for p in range(1, n)]
        found = self._vectors(more)
        vector_of = dict(zip(found["ids"], found["embeddings"], strict=True))
        return [np.asarray([first, *(vector_of[piece_id(i, p)] for p in range(1, n))],
                           dtype=np.float32)
                for i, first, n in zip(ids, firsts, counts, strict=True)]

    @_resilient
    def _vectors(self, ids: list[str]) -> Any:
        return self._collection.get(ids=ids, include=["embeddings"])

    @_resilient
    def _get(self, where: dict[str, Any], offset: int) -> Any:
        return self._collection.get(
            where=where, limit=self._max_batch, offset=offset,
            include=["documents", "metadatas", "embeddings"],
        )

    def inventory(self) -> Counter[tuple[str, int]]:
        """Chunks per (document id, generation): what the catalog must agree with."""
        counts: Counter[tuple[str, int]] = Counter()
        for page in self.chunks():
            counts.update((c.document_id, c.generation) for c in page)
        return counts

    def chunks(self) -> Iterator[list[Chunk]]:
        """Every stored chunk, without vectors, a page of at most max batch at a time."""
        offset = 0
        while page := self._page(offset):
            yield page
            offset += len(page)

    @_resilient
    def _page(self, offset: int) -> list[Chunk]:
        page = self._collection.get(
            where=CHUNKS, include=["documents", "metadatas"], limit=self._max_batch,
            offset=offset,
        )
        return [_chunk(t, m) for t, m in zip(page["documents"], page["metadatas"], strict=True)]


def piece_id(chunk_id: str, piece: int) -> str:
    """A piece's record id: the chunk's own for its first piece."""
    return chunk_id if piece == 0 else f"{chunk_id}{PIECE_MARK}{piece}"


def _records(chunk: Chunk, pieces: int) -> list[dict[str, Any]]:
    """The metadata of a chunk's records: all of it on the first, and on further pieces
    only what deletes and scope filters need."""
    first = _metadata(chunk) | {"text": chunk.text} | ({PIECES: pieces} if pieces > 1 else {})
    more = {key: first[key] for key in ("document_id", "generation", "owner")}
    return [first, *([more | {PIECE: True}] * (pieces - 1))]


def _where(scope: Scope | None) -> dict[str, Any] | None:
    """Chroma's filter for a scope."""
    if scope is None or scope.owners is None:
        return None
    by_owner = {"owner": {"$in": list(scope.owners)}} if scope.owners else None
    by_name = {"document_id": {"$in": sorted(scope.documents)}} if scope.documents else None
    if by_owner and by_name:
        return {"$or": [by_owner, by_name]}
    return by_owner or by_name


def _metadata(chunk: Chunk) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "document_id": chunk.document_id,
        "source": chunk.source,
        "chunk_index": chunk.chunk_index,
        "generation": chunk.generation,
        "start": chunk.start,
        "end": chunk.end,
        "owner": chunk.owner or SHARED,
    }
    # Chroma metadata cannot hold None; absent means unknown.
    if chunk.page is not None:
        meta["page"] = chunk.page
    if chunk.section:
        meta["section"] = chunk.section
    if chunk.title:
        meta["title"] = chunk.title
    if chunk.ocr:
        meta["ocr"] = True
    return meta


def _text(document: str | None, meta: dict[str, Any]) -> str:
    """A chunk's text: in its metadata (a Chroma document costs twice the write time,
    for a full-text index kb does not use), or as the document in older stores."""
    return str(meta.get("text") or document or "")


def _chunk(document: str | None, meta: dict[str, Any]) -> Chunk:
    return Chunk(
        document_id=str(meta["document_id"]),
        source=str(meta["source"]),
        chunk_index=int(meta["chunk_index"]),
        text=_text(document, meta),
        start=int(meta["start"]),
        end=int(meta["end"]),
        page=meta.get("page"),
        section=meta.get("section"),
        generation=int(meta["generation"]),
        owner=meta.get("owner") or None,
        title=meta.get("title"),
        ocr=bool(meta.get("ocr", False)),
    )


def _hit(document: str | None, meta: dict[str, Any], distance: float) -> Hit:
    return Hit(
        document_id=str(meta["document_id"]),
        source=str(meta["source"]),
        chunk_index=int(meta["chunk_index"]),
        text=_text(document, meta),
        score=1.0 - float(distance),
        page=meta.get("page"),
        section=meta.get("section"),
        generation=int(meta.get("generation", 1)),
        ocr=bool(meta.get("ocr", False)),
    )


class ChromaBackend:
    """A Chroma client: embedded under a folder, or a server by URL."""

    def __init__(self, path: Path | None = None, url: str | None = None) -> None:
        import chromadb
        from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False, allow_reset=False)
        self.where = url or "embedded"
        self.path = None if url else path
        try:
            if url:
                self._client = _http_client(url, settings)
            else:
                assert path is not None
                path.mkdir(parents=True, exist_ok=True)
                self._client = chromadb.PersistentClient(path=str(path), settings=settings)
            self.max_batch = int(self._client.get_max_batch_size())
        except Exception as exc:  # chromadb raises bare Exceptions for connection errors
            if url:
                message = f"Chroma server unreachable at {url}: {exc}; is it running?"
                message += " (KB_CHROMA_URL)"
            else:
                message = f"cannot open embedded Chroma under {path}: {exc} (KB_DATA_DIR)"
            raise UpstreamUnavailable(message) from exc

    @_resilient
    def open(self, name: str) -> ChromaStore:
        """Get or create a cosine collection (vectors always come from us)."""
        collection = self._client.get_or_create_collection(
            name, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
        )
        return ChromaStore(collection, self.max_batch, self.where)

    @_resilient
    def drop(self, name: str) -> None:
        """Delete a collection if it exists, and its files when embedded."""
        if name in self.names():
            self._client.delete_collection(name)
        self.sweep_files()

    def sweep_files(self) -> None:
        """Remove the segment folders of deleted collections (embedded Chroma leaves them)."""
        if self.path is None or not (self.path / "chroma.sqlite3").exists():
            return
        import sqlite3

        uri = f"file:{self.path / 'chroma.sqlite3'}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            live = {row[0] for row in db.execute("SELECT id FROM segments")}
        for folder in self.path.iterdir():
            if folder.is_dir() and _is_uuid(folder.name) and folder.name not in live:
                shutil.rmtree(folder, ignore_errors=True)

    @_resilient
    def names(self) -> list[str]:
        """Names of all collections."""
        return [c.name if hasattr(c, "name") else str(c) for c in self._client.list_collections()]

    def close(self) -> None:
        """Release the client and, for a server, its HTTP connections."""
        # Chroma's client.close() stops its System but leaves the HTTP sessions of a
        # server client (its own and its admin client's) open: unclosed sockets at exit.
        admin = getattr(self._client, "_admin_client", None)
        servers = [getattr(self._client, "_server", None), getattr(admin, "_server", None)]
        self._client.close()
        for server in servers:
            session = getattr(server, "_session", None)
            if session is not None:
                session.close()

    def heartbeat(self) -> None:
        """Raise UpstreamUnavailable when Chroma does not answer."""
        try:
            self._client.heartbeat()
        except Exception as exc:
            raise UpstreamUnavailable(f"Chroma does not answer: {exc}") from exc


def _is_uuid(name: str) -> bool:
    try:
        uuid.UUID(name)
    except ValueError:
        return False
    return True


def _http_client(url: str, settings: Any) -> Any:
    from urllib.parse import urlparse

    import chromadb

    parts = urlparse(url)
    return chromadb.HttpClient(
        host=parts.hostname or "localhost",
        port=parts.port or (443 if parts.scheme == "https" else 8000),
        ssl=parts.scheme == "https",
        settings=settings,
    )
