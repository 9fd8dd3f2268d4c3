"""Chunks, their vectors and their BM25 terms in one Milvus collection.

The same client talks to milvus-lite (a folder, embedded in this process), a
Milvus standalone server or a cluster (``http://host:19530``). Both search
legs live in the collection: the dense leg is an HNSW index (cosine), the
lexical leg Milvus's own BM25 function over a ``terms`` field that holds
``retrieval.analysis``'s terms joined by spaces, so the terms, and
the query's, are exactly those of the tantivy index on the Chroma path.
Milvus only splits them again: on whitespace on a server; milvus-lite has
no whitespace tokenizer, and its ``standard`` one (``\\w+``, lower-cased)
gives back the same terms. Those are a chunk's window, its own terms and
its neighbours' (``retrieval.context``), as on the Chroma path; a collection
made before windows (its ``kb.terms`` property says) holds plain chunk terms
until ``kb reindex``. Fusion happens in kb, as on the Chroma path.

Writes are upserts by chunk id and deletes by filter, so every call is
idempotent and retried when the server drops out. Collections are created
with strong consistency: a search sees every write that has returned, which
the intent protocol in ``ingest.catalog`` relies on. Milvus's own types stay
in this module.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.analysis import analyze
from retrieval.context import stored_neighbours, with_context
from retrieval.errors import UpstreamUnavailable
from retrieval.stores import SHARED, ChunkVectors, Store, StoreKind, retrying
from retrieval.types import Chunk, Hit, Scope

log = logging.getLogger(__name__)

MAX_VARCHAR = 65_535  # bytes, Milvus's longest VARCHAR
PAGE = 1000  # rows per read; a server caps offset + limit at 16,384
HNSW = {"M": 16, "efConstruction": 200}
BM25 = {"bm25_k1": 1.2, "bm25_b": 0.75}  # as tantivy scores
META = ("source", "page", "section", "title", "start", "end", "ocr")
TERMS = {"kb.terms": "windows"}  # a collection property: what its terms field holds
# milvus-lite searches rows it has not flushed by scanning them (and rebuilds their BM25
# postings per search): past this many it flushes them into an indexed segment.
LITE_UNFLUSHED_ROWS = 0


def _quiet_milvus_logs() -> None:
    """pymilvus logs every failed call with a traceback on its own handler, and
    milvus-lite's in-process gRPC server logs the calls it does not implement (pymilvus
    asks for a timestamp while creating an index, then carries on); kb reports errors
    itself, so only its messages reach the user."""
    quiet = ("pymilvus", "pymilvus.milvus_client", "pymilvus.bulk_writer", "milvus_lite",
             "grpc._server")
    for name in quiet:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def _disconnected(exc: Exception) -> bool:
    import grpc
    from pymilvus.exceptions import ConnectError, MilvusException, MilvusUnavailableException

    if isinstance(exc, ConnectError | MilvusUnavailableException):
        return True
    if isinstance(exc, grpc.RpcError):
        return exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    return isinstance(exc, MilvusException) and "server unavailable" in str(exc)


_resilient = retrying(
    _disconnected, "Milvus unreachable at {where}: {error}; is it running? (KB_MILVUS_URI)"
)


class MilvusStore:
    """One Milvus collection: vectors, chunk fields and a BM25 index of their terms."""

    pieces = False  # one vector per chunk: the BM25 leg shares its row

    def __init__(self, client: Any, name: str, where: str, flush_after: int | None) -> None:
        self._client, self.name, self.where = client, name, where
        self._flush_after = flush_after
        self._unflushed = 0
        # Concurrent uploads write one at a time: milvus-lite flushing while another
        # thread upserts failed ("current_seq is monotonic") and then stopped serving.
        self._writing = threading.Lock()

    def add(self, chunks: Sequence[Chunk], vectors: ChunkVectors) -> None:
        """Upsert chunks with their vectors and terms, and the stored chunks beside them
        with their new neighbourhood."""
        with self._writing:
            self._add(chunks, vectors)

    @_resilient
    def _add(self, chunks: Sequence[Chunk], vectors: ChunkVectors) -> None:
        if not chunks:
            return
        if any(np.ndim(v) != 1 for v in vectors):
            raise ValueError("a Milvus collection holds one vector per chunk, not dense pieces")
        vector_of = {c.id: v for c, v in zip(chunks, vectors, strict=True)}
        stored: list[Chunk] = []
        if ids := stored_neighbours(chunks):
            found = self._read(f"id in [{', '.join(map(_quote, ids))}]",
                               [*CHUNK_FIELDS, "vector"])
            stored = [_chunk(row) for row in found]
            vector_of.update((c.id, row["vector"]) for c, row in zip(stored, found, strict=True))
        rows = [_row(c, vector_of[c.id], terms) for c, terms in with_context(chunks, stored)]
        for start in range(0, len(rows), PAGE):
            self._client.upsert(self.name, rows[start : start + PAGE])
        self._unflushed += len(rows)
        if self._flush_after is not None and self._unflushed > self._flush_after:
            self._client.flush(self.name)
            self._unflushed = 0

    @_resilient
    def delete(self, document_id: str, generation: int | None = None) -> None:
        """Delete by filter: a document's chunks, one generation or all."""
        with self._writing:
            self._client.delete(self.name, filter=_generation_filter(document_id, generation))

    @_resilient
    def delete_many(self, generations: Sequence[tuple[str, int]]) -> None:
        """Delete several (document, generation) chunk sets, a hundred to a call."""
        for start in range(0, len(generations), 100):
            part = generations[start : start + 100]
            where = " or ".join(f"({_generation_filter(d, g)})" for d, g in part)
            with self._writing:
                self._client.delete(self.name, filter=where)

    def query(self, vector: np.ndarray, k: int, scope: Scope | None = None) -> list[Hit]:
        """Nearest neighbours in ``scope``; the score is cosine similarity."""
        return [_hit(row["entity"], row["distance"]) for row in self._nearest(
            vector, k, scope, HIT_FIELDS)]

    def nearest(self, vector: np.ndarray, k: int, scope: Scope | None = None
                ) -> list[tuple[str, float]]:
        """Chunk ids and cosine similarities of the ``k`` nearest chunks in ``scope``."""
        return [(str(row["id"]), float(row["distance"]))
                for row in self._nearest(vector, k, scope, [])]

    @_resilient
    def _nearest(self, vector: np.ndarray, k: int, scope: Scope | None, fields: list[str]
                 ) -> list[dict[str, Any]]:
        if k <= 0 or (scope is not None and scope.nothing):
            return []
        params = {"metric_type": "COSINE", "params": {"ef": max(100, k)}}
        found = self._client.search(
            self.name, data=[np.asarray(vector, dtype=np.float32).tolist()], anns_field="vector",
            limit=k, filter=_scope_filter(scope), output_fields=fields, search_params=params,
        )
        return list(found[0])

    @_resilient
    def hits(self, scored: Sequence[tuple[str, float]]) -> list[Hit]:
        """Hits for these (chunk id, score) pairs, in their order; an id not stored is
        left out."""
        if not scored:
            return []
        where = f"id in [{', '.join(_quote(i) for i, _ in scored)}]"  # get() does not escape
        rows = self._client.query(self.name, filter=where, output_fields=["id", *HIT_FIELDS])
        by_id = {str(row["id"]): row for row in rows}
        return [_hit(by_id[i], score) for i, score in scored if i in by_id]

    @_resilient
    def lexical_query(self, text: str, k: int, scope: Scope | None = None) -> list[Hit]:
        """The ``k`` best BM25 matches for ``text`` in ``scope``."""
        terms = analyze(text)
        if not terms or k <= 0 or (scope is not None and scope.nothing):
            return []
        found = self._client.search(
            self.name, data=[" ".join(terms)], anns_field="sparse", limit=k,
            filter=_scope_filter(scope), output_fields=HIT_FIELDS,
            search_params={"metric_type": "BM25"},
        )
        # milvus-lite reports BM25 as a negated distance, a server as the score itself.
        return [_hit(row["entity"], abs(row["distance"])) for row in found[0]]

    @_resilient
    def count(self) -> int:
        """Number of chunks in the collection."""
        rows = self._client.query(self.name, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def vector_count(self) -> int:
        """One vector per chunk."""
        return self.count()

    def lexical_count(self) -> int:
        """Every chunk is in the BM25 index: Milvus derives it from the row."""
        return self.count()

    def in_step(self, listed: int) -> bool:
        """Always: both legs are one row."""
        return True

    def rebuild_lexical(self, progress: Callable[[int], None]) -> None:
        """Nothing to rebuild: the BM25 index is Milvus's own, from the stored rows."""

    def stored(self, document_id: str, generation: int
               ) -> Iterator[tuple[list[Chunk], ChunkVectors]]:
        """One document generation's chunks with their vectors, by chunk index, a page at a time.

        A generation's chunk indexes run from 0 without gaps, so a short page is the last.
        """
        where = _generation_filter(document_id, generation)
        for start in itertools.count(0, PAGE):
            rows = self._read(f"{where} and chunk_index >= {start} and chunk_index < "
                              f"{start + PAGE}", [*CHUNK_FIELDS, "vector"])
            rows.sort(key=lambda r: int(r["chunk_index"]))
            if rows:
                vectors = np.asarray([r["vector"] for r in rows], dtype=np.float32)
                yield [_chunk(r) for r in rows], vectors
            if len(rows) < PAGE:
                return

    @_resilient
    def _read(self, where: str, fields: list[str]) -> list[dict[str, Any]]:
        return list(self._client.query(self.name, filter=where, output_fields=fields))

    def chunks(self) -> Iterator[list[Chunk]]:
        """Every stored chunk, without vectors, a page at a time."""
        pages = self._client.query_iterator(
            self.name, batch_size=PAGE, filter="", output_fields=CHUNK_FIELDS
        )
        try:
            while page := pages.next():
                yield [_chunk(row) for row in page]
        finally:
            pages.close()

    def inventory(self) -> Counter[tuple[str, int]]:
        """Chunks per (document id, generation)."""
        counts: Counter[tuple[str, int]] = Counter()
        for page in self.chunks():
            counts.update((c.document_id, c.generation) for c in page)
        return counts

    def close(self) -> None:
        """Nothing per collection: the backend holds the client."""


CHUNK_FIELDS = ["document_id", "generation", "chunk_index", "owner", "text", "meta"]
HIT_FIELDS = ["document_id", "generation", "chunk_index", "text", "meta"]


def _quote(value: str) -> str:
    """A string literal in Milvus's filter language."""
    return json.dumps(value, ensure_ascii=False)


def _generation_filter(document_id: str, generation: int | None) -> str:
    where = f"document_id == {_quote(document_id)}"
    return where if generation is None else f"{where} and generation == {int(generation)}"


def _scope_filter(scope: Scope | None) -> str:
    """The filter for a scope: its owners' chunks and its named documents' ("" for all)."""
    if scope is None or scope.owners is None:
        return ""
    parts = []
    if scope.owners:
        parts.append(f"owner in [{', '.join(map(_quote, scope.owners))}]")
    if scope.documents:
        parts.append(f"document_id in [{', '.join(map(_quote, sorted(scope.documents)))}]")
    return " or ".join(parts)


def _row(chunk: Chunk, vector: np.ndarray, terms: list[str]) -> dict[str, Any]:
    if len(chunk.text.encode()) > MAX_VARCHAR:
        raise ValueError(
            f"a chunk of {chunk.source} is longer than Milvus's {MAX_VARCHAR}-byte text field; "
            "lower KB_CHUNK_TOKENS"
        )
    meta = {name: getattr(chunk, name) for name in META}
    return {
        "id": chunk.id, "vector": np.asarray(vector, dtype=np.float32).tolist(),
        "terms": _joined(terms), "document_id": chunk.document_id,
        "generation": chunk.generation, "chunk_index": chunk.chunk_index,
        "owner": chunk.owner or SHARED, "text": chunk.text, "meta": meta,
    }


def _joined(terms: list[str]) -> str:
    """Terms, space-separated, cut at a term to fit the field (a window's own terms
    come first, so only neighbours' are cut)."""
    joined = " ".join(terms)
    if len(joined.encode()) <= MAX_VARCHAR:
        return joined
    cut = joined.encode()[:MAX_VARCHAR].decode(errors="ignore")
    return cut.rsplit(" ", 1)[0]


def _chunk(row: dict[str, Any]) -> Chunk:
    meta = row["meta"]
    return Chunk(
        document_id=row["document_id"], source=meta["source"],
        chunk_index=int(row["chunk_index"]), text=row["text"], start=int(meta["start"]),
        end=int(meta["end"]), page=meta.get("page"), section=meta.get("section"),
        generation=int(row["generation"]), owner=row.get("owner") or None,
        title=meta.get("title"), ocr=bool(meta.get("ocr")),
    )


def _hit(row: dict[str, Any], score: float) -> Hit:
    meta = row["meta"]
    return Hit(
        document_id=row["document_id"], source=meta["source"],
        chunk_index=int(row["chunk_index"]), text=row["text"], score=float(score),
        page=meta.get("page"), section=meta.get("section"),
        generation=int(row["generation"]), ocr=bool(meta.get("ocr")),
    )


class MilvusBackend:
    """A Milvus client: milvus-lite in a folder, or a server or cluster by URL.

    It connects at first use, so a kb process that finds its data directory
    busy says so before milvus-lite's own lock does.
    """

    def __init__(self, uri: str, token: str | None = None) -> None:
        self.uri, self._token = uri, token
        self.kind: StoreKind = "milvus"
        self.lite = "://" not in uri
        self.where = "milvus-lite" if self.lite else uri
        self._client: Any = None

    @property
    def client(self) -> Any:
        """The connected client (connecting on first use)."""
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _connect(self) -> Any:
        _quiet_milvus_logs()
        from pymilvus import MilvusClient

        if self.lite:
            Path(self.uri).mkdir(parents=True, exist_ok=True)
        try:
            return MilvusClient(uri=self.uri, token=self._token or "", timeout=10)
        except Exception as exc:  # pymilvus raises MilvusException for every failure
            if self.lite:
                message = f"cannot open milvus-lite under {self.uri}: {exc} (KB_MILVUS_URI)"
            else:
                message = f"Milvus unreachable at {self.uri}: {exc}; is it running? (KB_MILVUS_URI)"
            raise UpstreamUnavailable(message) from exc

    @_resilient
    def open(self, name: str, dimension: int) -> MilvusStore:
        """Open a collection, creating it (and its indexes) for ``dimension``-sized vectors."""
        if not self.client.has_collection(name):
            self._create(name, dimension)
        self.client.load_collection(name)  # a reopened collection starts released
        flush_after = LITE_UNFLUSHED_ROWS if self.lite else None
        properties = self.client.describe_collection(name).get("properties") or {}
        if any(properties.get(key) != value for key, value in TERMS.items()):
            log.warning("Milvus collection %s predates neighbourhood search: chunks written "
                        "before it are matched by their own words only until `kb reindex`", name)
        return MilvusStore(self.client, name, self.where, flush_after)

    def _create(self, name: str, dimension: int) -> None:
        """Create the collection; a server splits our terms on whitespace, milvus-lite (which
        has no such tokenizer) with its ``\\w+`` one: the same terms (see the module)."""
        from pymilvus.exceptions import MilvusException

        if self.lite:
            self._create_with(name, dimension, "standard")
            return
        try:
            self._create_with(name, dimension, "whitespace")
        except MilvusException as exc:
            if "tokenizer" not in str(exc):
                raise
            log.warning("Milvus at %s has no whitespace tokenizer (%s): keyword search uses "
                        "its standard one, which on Milvus before 2.6 cuts Chinese words into "
                        "characters; upgrade Milvus for full quality", self.where, exc)
            self._create_with(name, dimension, "standard")

    def _create_with(self, name: str, dimension: int, tokenizer: str) -> None:
        from pymilvus import DataType, Function, FunctionType

        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MAX_VARCHAR)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
        schema.add_field("terms", DataType.VARCHAR, max_length=MAX_VARCHAR, enable_analyzer=True,
                         analyzer_params={"tokenizer": tokenizer})
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_field("document_id", DataType.VARCHAR, max_length=MAX_VARCHAR)
        schema.add_field("generation", DataType.INT64)
        schema.add_field("chunk_index", DataType.INT64)
        schema.add_field("owner", DataType.VARCHAR, max_length=MAX_VARCHAR)
        schema.add_field("text", DataType.VARCHAR, max_length=MAX_VARCHAR)
        schema.add_field("meta", DataType.JSON)
        schema.add_function(Function(name="bm25", function_type=FunctionType.BM25,
                                     input_field_names=["terms"], output_field_names=["sparse"]))
        indexes = self.client.prepare_index_params()
        indexes.add_index("vector", index_type="HNSW", metric_type="COSINE", params=HNSW)
        indexes.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                          params=BM25)
        self.client.create_collection(name, schema=schema, index_params=indexes,
                                      consistency_level="Strong")
        self.client.alter_collection_properties(name, properties=TERMS)

    @_resilient
    def drop(self, name: str, store: Store | None = None) -> None:
        """Delete a collection if it exists."""
        if self.client.has_collection(name):
            self.client.drop_collection(name)

    def sweep(self, keep: str) -> None:
        """Nothing to sweep: dropping a collection removes all of it."""

    @_resilient
    def names(self) -> list[str]:
        """Names of all collections."""
        return list(self.client.list_collections())

    def heartbeat(self) -> None:
        """Raise UpstreamUnavailable when Milvus does not answer."""
        try:
            self.client.list_collections(timeout=5)
        except UpstreamUnavailable:
            raise
        except Exception as exc:
            raise UpstreamUnavailable(f"Milvus does not answer at {self.where}: {exc}") from exc

    def close(self) -> None:
        """Close the client; milvus-lite also stops and releases its folder."""
        if self._client is None:
            return
        self._client.close()
        self._client = None
        if self.lite:
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(self.uri)
