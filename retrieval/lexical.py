"""The lexical leg: a tantivy (BM25) index of chunk text beside the vector store.

One index folder per collection, so a re-index builds a new one and switches
with the collection. Terms come from ``retrieval.analysis`` (the same for
documents and queries) and are stored pre-tokenised; tantivy scores them with
BM25. Each chunk keeps what a hit needs (source, page, text) so a lexical hit
costs no trip to the vector store. Writes become visible, and durable, at
``commit``; the write protocol in ``ingest.catalog`` commits before the
catalog names a generation current, and deletes by (document, generation)
exactly as it does in the vector store. Each chunk is indexed with its
neighbours' terms (``retrieval.context``); the neighbours it needs are
looked up among the committed chunks.
"""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
import tantivy

from retrieval.analysis import analyze
from retrieval.context import stored_neighbours, with_context
from retrieval.errors import KbError
from retrieval.types import Chunk, Hit, Scope

WRITER_HEAP = 48_000_000  # bytes buffered before tantivy writes a segment by itself
ID_LOOKUPS = 256  # chunks looked up by id one term each; more, by a term set


class LexicalIndexDamaged(KbError):
    """The index folder is missing, unreadable or not ours (it is rebuilt from the store)."""


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    for name in ("chunk_id", "document_id", "doc_gen", "owner"):
        builder.add_text_field(name, stored=name in ("chunk_id", "document_id"),
                               tokenizer_name="raw", index_option="basic")
    # The terms of a chunk's window (``retrieval.context``). Terms never contain
    # whitespace (see ``analyze``), so joined by spaces they split back.
    builder.add_text_field("window", tokenizer_name="whitespace", index_option="freq")
    builder.add_bytes_field("payload", stored=True)
    return builder.build()


class LexicalIndex:
    """A persistent tantivy index with one writer, safe to search from any thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._schema = _schema()
        try:
            path.mkdir(parents=True, exist_ok=True)
            self._index = tantivy.Index(self._schema, path=str(path), reuse=True)
            self._writer = self._index.writer(heap_size=WRITER_HEAP, num_threads=1)
        except (ValueError, OSError) as exc:
            if "schema does not match" in str(exc):
                raise LexicalIndexDamaged(
                    f"lexical index at {path} was built by an earlier version of kb") from exc
            raise LexicalIndexDamaged(f"lexical index at {path} cannot be opened: {exc}") from exc
        self._lock = threading.Lock()

    @classmethod
    def destroy(cls, path: Path) -> None:
        """Remove an index folder, if it exists."""
        shutil.rmtree(path, ignore_errors=True)

    def close(self) -> None:
        """Release the writer (and its lock file)."""
        with self._lock:
            self._writer.wait_merging_threads()

    def add(self, chunks: Sequence[Chunk]) -> None:
        """Index chunks, replacing any with the same id; visible after ``commit``.

        Committed chunks beside them are indexed again with their new
        neighbours (see ``retrieval.context``).
        """
        entries = with_context(chunks, self._stored(stored_neighbours(chunks)))
        docs = [(chunk.id, _document(chunk, terms)) for chunk, terms in entries]
        with self._lock:
            for chunk_id, doc in docs:
                self._writer.delete_documents_by_term("chunk_id", chunk_id)
                self._writer.add_document(doc)

    def _stored(self, chunk_ids: list[str]) -> list[Chunk]:
        """The committed chunks among these ids."""
        return [_chunk(_payload(doc)) for doc in self._by_id(chunk_ids).values()]

    def hits(self, scored: Sequence[tuple[str, float]]) -> list[Hit]:
        """Hits for these (chunk id, score) pairs, in their order; an id not committed
        here is left out."""
        docs = self._by_id([chunk_id for chunk_id, _ in scored])
        return [_hit(docs[i], score) for i, score in scored if i in docs]

    def _by_id(self, chunk_ids: list[str]) -> dict[str, tantivy.Document]:
        """The committed chunks among these ids, as stored, by id."""
        if not chunk_ids:
            return {}
        searcher = self._index.searcher()
        found = searcher.search(self._ids(chunk_ids), len(chunk_ids), count=False).hits
        docs = (searcher.doc(address) for _, address in found)
        return {str(doc.get_first("chunk_id")): doc for doc in docs}

    def _ids(self, chunk_ids: list[str]) -> tantivy.Query:
        """The chunks with these ids: a term lookup each for as many as a search asks
        for (30 ids: 0.14 ms, against 0.37 ms for a term set, which reads the field's
        term dictionary), a term set for more (equal at about 300)."""
        if len(chunk_ids) > ID_LOOKUPS:
            return tantivy.Query.term_set_query(self._schema, "chunk_id", chunk_ids)
        return tantivy.Query.boolean_query([
            (tantivy.Occur.Should, tantivy.Query.term_query(self._schema, "chunk_id", i))
            for i in chunk_ids
        ])

    def delete(self, document_id: str, generation: int | None = None) -> None:
        """Remove a document's chunks (one generation, or all) and commit."""
        with self._lock:
            if generation is None:
                self._writer.delete_documents_by_term("document_id", document_id)
            else:
                self._writer.delete_documents_by_term("doc_gen", f"{document_id}:{generation}")
        self.commit()

    def delete_many(self, generations: Sequence[tuple[str, int]]) -> None:
        """Remove several (document, generation) chunk sets with one commit."""
        with self._lock:
            for document_id, generation in generations:
                self._writer.delete_documents_by_term("doc_gen", f"{document_id}:{generation}")
        self.commit()

    def commit(self) -> None:
        """Make every write so far durable and searchable."""
        with self._lock:
            self._writer.commit()
        self._index.reload()

    def count(self) -> int:
        """Number of chunks searchable now."""
        return int(self._index.searcher().num_docs)

    def query(self, text: str, k: int, scope: Scope | None = None) -> list[Hit]:
        """The ``k`` best BM25 matches for ``text`` in ``scope`` (everything when ``None``)."""
        terms = analyze(text)
        if not terms or k <= 0 or (scope is not None and scope.nothing):
            return []
        match = tantivy.Query.boolean_query([
            (tantivy.Occur.Should, tantivy.Query.term_query(self._schema, "window", t))
            for t in terms  # a repeated query term weighs more, as a repeated word does
        ])
        if scope is not None and scope.owners is not None:
            match = tantivy.Query.boolean_query([
                (tantivy.Occur.Must, match),
                (tantivy.Occur.Must, tantivy.Query.const_score_query(self._filter(scope), 0.0)),
            ])
        searcher = self._index.searcher()
        found = searcher.search(match, k).hits
        return [_hit(searcher.doc(address), score) for score, address in found]

    def _filter(self, scope: Scope) -> tantivy.Query:
        """The chunks a scope allows: its owners' and its named documents'."""
        owners = [_owner_term(o) for o in scope.owners or ()]
        parts = [("owner", owners), ("document_id", sorted(scope.documents))]
        return tantivy.Query.boolean_query([
            (tantivy.Occur.Should, tantivy.Query.term_set_query(self._schema, field, values))
            for field, values in parts if values
        ])

    def inventory(self) -> Counter[tuple[str, int]]:
        """Chunks per (document id, generation), to check agreement with the catalog."""
        searcher = self._index.searcher()
        total = max(1, searcher.num_docs)
        found = searcher.search(tantivy.Query.all_query(), total).hits
        counts: Counter[tuple[str, int]] = Counter()
        for _, address in found:
            payload = _payload(searcher.doc(address))
            counts[(payload["document_id"], int(payload["generation"]))] += 1
        return counts

    def rebuild_from(self, chunks: Iterable[Sequence[Chunk]]) -> int:
        """Replace the whole content with ``chunks`` (pages of them); returns how many."""
        written = 0
        with self._lock:
            self._writer.delete_all_documents()
        for page in chunks:
            self.add(page)
            self.commit()  # the next page's neighbours are looked up among committed chunks
            written += len(page)
        self.commit()
        return written


def _document(chunk: Chunk, terms: list[str]) -> tantivy.Document:
    doc = tantivy.Document()
    doc.add_text("chunk_id", chunk.id)
    doc.add_text("document_id", chunk.document_id)
    doc.add_text("doc_gen", f"{chunk.document_id}:{chunk.generation}")
    doc.add_text("owner", _owner_term(chunk.owner or ""))
    doc.add_text("window", " ".join(terms))
    payload = {
        "document_id": chunk.document_id, "source": chunk.source, "page": chunk.page,
        "section": chunk.section, "chunk_index": chunk.chunk_index,
        "generation": chunk.generation, "text": chunk.text, "ocr": chunk.ocr,
        "owner": chunk.owner, "title": chunk.title, "start": chunk.start, "end": chunk.end,
    }
    doc.add_bytes("payload", orjson.dumps(payload))
    return doc


def _owner_term(owner: str) -> str:
    """Owners as terms: the shared mark ("") cannot be an empty term."""
    return f"u:{owner}" if owner else "shared"


def _payload(doc: tantivy.Document) -> dict[str, Any]:
    return dict(orjson.loads(bytes(doc.get_first("payload") or b"{}")))


def _chunk(p: dict[str, Any]) -> Chunk:
    return Chunk(
        document_id=p["document_id"], source=p["source"], chunk_index=int(p["chunk_index"]),
        text=p["text"], start=int(p["start"]), end=int(p["end"]), page=p["page"],
        section=p["section"], generation=int(p["generation"]), owner=p["owner"],
        title=p["title"], ocr=bool(p["ocr"]),
    )


def _hit(doc: tantivy.Document, score: float) -> Hit:
    p = _payload(doc)
    return Hit(
        document_id=p["document_id"], source=p["source"], chunk_index=int(p["chunk_index"]),
        text=p["text"], score=float(score), page=p["page"], section=p["section"],
        generation=int(p["generation"]), ocr=bool(p.get("ocr", False)),
    )
