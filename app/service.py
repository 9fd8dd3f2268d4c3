"""The knowledge base service: one object that the CLI and the API both drive."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import sys
import threading
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path
from typing import Any

from app.gate import Gate
from ingest import ocr
from ingest.catalog import INDEXED, Catalog, Document
from ingest.chunking import Chunker, ChunkSettings
from ingest.claims import Claims
from ingest.commit import CatalogCommitter, CollectingCommitter
from ingest.loaders import PARSER_VERSION, Limits
from ingest.originals import Originals
from ingest.pieces import PieceCutter
from ingest.pipeline import FAILED, Outcome, Pipeline, Source, upload_key, upload_ref
from ingest.workers import ChunkPlan, Parser, ParserPool
from retrieval.answer import Citation, answer_stream
from retrieval.chat import ChatModel
from retrieval.embedders import Embedder
from retrieval.errors import ConfigurationError, DataDirBusy, DocumentNotFound, KbError
from retrieval.fusion import Fusion
from retrieval.rerank import Reranker
from retrieval.rerank import rerank as rerank_hits
from retrieval.search import HYBRID, search
from retrieval.stores import SHARED, Store, StoreBackend
from retrieval.types import Results, Scope

log = logging.getLogger(__name__)

STORE_VERSION = 3  # chunk layout in the stores; 2 added the owner, 3 the title in front
WEBUI_SCHEME = "owui"  # keys of uploads through Open WebUI: owui:<owner>:<file id>


class KnowledgeBase:
    """Catalog, originals, embedder and vector store behind one data directory."""

    def __init__(
        self, *, data_dir: Path, embedder: Embedder, backend: StoreBackend, limits: Limits,
        chunking: ChunkSettings, batch_size: int = 64, llm: ChatModel | None = None,
        min_score: float = 0.0, fusion: Fusion | None = None, reranker: Reranker | None = None,
        rerank_top_n: int = 30, owns_clients: bool = False, parser: Parser | None = None,
        piece_tokens: int = 0,
    ) -> None:
        self.data_dir, self.embedder, self.backend = data_dir, embedder, backend
        self.llm, self.min_score, self.fusion = llm, min_score, fusion or Fusion()
        self.reranker, self.rerank_top_n = reranker, rerank_top_n
        self._owns_clients = owns_clients  # backend and parser opened for it: closed with it
        # A remote embedder takes several requests at once: give it enough per call.
        self.limits, self.batch_size = limits, batch_size * embedder.max_concurrency
        self._lock_file = _lock_data_dir(data_dir)
        self.catalog = Catalog(data_dir / "catalog.sqlite3")
        self.originals = Originals(data_dir / "originals")
        fitted = chunking.fitted(embedder.max_tokens, embedder.special_tokens)
        self.chunker = Chunker(fitted, embedder.count_tokens)
        tokenizer = embedder.tokenizer_path
        self.chunk_plan = None if tokenizer is None else ChunkPlan(fitted, tokenizer)
        self.embedding_id = embedder.embedding_id
        self._owns_parser = owns_clients or parser is None
        self.parser = parser or ParserPool(os.cpu_count() or 1)
        # Uploads and deletes run side by side (``Claims`` orders writes to one document);
        # a re-index runs alone. Nothing waits on a file being parsed.
        self.gate, self.claims = Gate(), Claims()
        self.closing = threading.Event()  # set on shutdown: running work cancels itself
        self.store = self._active_store()
        # Dense pieces where the store keeps several vectors a chunk and a chunk can hold
        # more than one piece.
        fits = self.store.pieces and 0 < piece_tokens < fitted.tokens
        self.piece_tokens = piece_tokens if fits else 0
        self.cutter = PieceCutter.of(embedder, piece_tokens) if fits else None
        self.fingerprint = _fingerprint(self.embedding_id, fitted, self.piece_tokens)
        self.recover()
        self._unusable = self._refusal()  # decided once: only a re-index changes it

    def shutdown(self) -> None:
        """Cancel running ingests (they roll back what is in flight); used before ``close``."""
        self.closing.set()

    def close(self) -> None:
        """Release the parsers, indexes, clients, the catalog and the data-directory lock."""
        self.closing.set()
        if not self.gate.drain(timeout=30):  # running work rolls back on ``closing``
            log.warning("closing while an ingest is still rolling back; the next start "
                        "finishes the clean-up")
        if self._owns_parser:
            self.parser.close()
        self.store.close()
        if self.reranker is not None:
            self.reranker.close()
        if self._owns_clients:
            self.backend.close()
            self.embedder.close()
        self.catalog.close()
        self._lock_file.close()

    # -- start-up -----------------------------------------------------------

    def _active_store(self) -> Store:
        name = self.catalog.get_meta("collection")
        if name and self._built_elsewise() and not self.catalog.counts().get("chunks"):
            if self._stored_kind() == self.backend.kind:
                self.backend.drop(name)  # empty index built for another model: start afresh
            name = None
        if not name:
            name = _new_collection_name()
            self.catalog.set_meta("collection", name)
            self._record_build()
        return self.backend.open(name, self.embedder.dimension)

    def _stored_kind(self) -> str:
        """The store family the index lives in (indexes older than Milvus are in Chroma)."""
        return self.catalog.get_meta("store") or "chroma"

    def _built_elsewise(self) -> bool:
        """Whether the index was built by another model or lives in another store."""
        stored_id = self.catalog.get_meta("embedding")
        return stored_id != self.embedding_id or self._stored_kind() != self.backend.kind

    def _record_build(self) -> None:
        self.catalog.set_meta("embedding", self.embedding_id)
        self.catalog.set_meta("store", self.backend.kind)

    def recover(self) -> None:
        """Finish what an interrupted process left: stray vectors, partial re-index, jobs."""
        for doc_id, generation in self.catalog.pending():
            self.store.delete(doc_id, generation)
            self.catalog.done(doc_id, generation)
        leftover = self.catalog.get_meta("reindex_collection")
        if leftover:
            self.backend.drop(leftover)
            self.catalog.set_meta("reindex_collection", None)
        self.backend.sweep(keep=self.store.name)
        if not self.store.in_step(self.catalog.counts().get("chunks", 0)):
            self._rebuild_lexical()
        self.originals.sweep_incoming()
        _empty_folder(self.data_dir / "uploads")  # received by a process that is gone

    def _rebuild_lexical(self) -> None:
        """Refill a missing, damaged or stale lexical index from the vector store's chunks."""
        from tqdm import tqdm

        total = self.store.count()
        log.warning("the lexical index of %s is out of step with the vector store: "
                    "rebuilding it from %d stored chunks", self.store.name, total)
        with tqdm(total=total, desc="rebuild lexical index", unit="chunk", file=sys.stderr,
                  disable=None) as bar:
            self.store.rebuild_lexical(bar.update)

    def check_index(self) -> None:
        """Refuse to search or write an index that cannot be used as it stands."""
        if self._unusable:
            raise ConfigurationError(self._unusable)

    def _refusal(self) -> str | None:
        """Why the index cannot be used until `kb reindex` (``None``: it can be): vectors of
        another model, a store the index is not in, or a store without the catalog's chunks."""
        stored, kind = self.catalog.get_meta("embedding"), self._stored_kind()
        if stored != self.embedding_id:
            return (f"the index was built with embedding model {stored} but the service now "
                    f"uses {self.embedding_id}; run `kb reindex` to re-embed every document")
        if kind != self.backend.kind:
            return (f"the index is stored in {kind} but KB_STORE is now {self.backend.kind}; run "
                    f"`kb reindex` to rebuild it there from the kept originals, or set "
                    f"KB_STORE={kind}")
        chunks = self.catalog.counts().get("chunks", 0)
        if chunks and not self.store.vector_count():  # a wiped server, or a URL elsewhere
            return (f"the catalog lists {chunks} chunks but collection {self.store.name} at "
                    f"{self.backend.where} holds none (a new or wiped server?); point kb at the "
                    "store that has them, or run `kb reindex` to rebuild it from the kept "
                    "originals")
        return None

    # -- operations ----------------------------------------------------------

    def ingest(
        self, sources: Iterable[Source], on_outcome: Callable[[Outcome], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> list[Outcome]:
        """Ingest files; identical content is skipped, changed content replaced.

        Setting ``cancel`` (or shutting down) rolls back the files in flight and
        raises ``Cancelled``; files already finished stay indexed.
        """
        return self._ingest(sources, on_outcome, cancel)[0]

    def _ingest(
        self, sources: Iterable[Source], on_outcome: Callable[[Outcome], None] | None,
        cancel: threading.Event | None, keep_text: bool = False,
    ) -> tuple[list[Outcome], dict[str, list[str]]]:
        """Run the pipeline beside other uploads (a re-index waits): the outcomes, and
        the text of each parsed document when ``keep_text``."""
        self.check_index()
        cancelled = self._cancelled(cancel)
        with self.gate.shared(cancelled):
            pipeline = self._pipeline(self.store, CatalogCommitter(self.catalog, self.store))
            outcomes = pipeline.run(sources, on_outcome, cancelled=cancelled, keep_text=keep_text)
        return outcomes, pipeline.texts or {}

    def upload(
        self, source: Source, cancel: threading.Event | None = None
    ) -> tuple[Outcome, str | None]:
        """Ingest one uploaded file; returns its outcome and, unless it failed, its text
        (from the same parse, or parsed again when nothing needed parsing)."""
        [outcome], texts = self._ingest([source], None, cancel, keep_text=True)
        if outcome.status == FAILED:
            return outcome, None
        parts = texts.get(outcome.document_id)
        if parts is None:  # unchanged, or vectors reused: nothing was parsed
            return outcome, self.extract_text(source.path, source.name, cancel)
        return outcome, "\n\n".join(parts)

    def upload_source(
        self, scheme: str, ref: str, name: str, path: Path, owner: str | None
    ) -> Source:
        """The ``Source`` for a file to ingest, the one place document keys are minted:
        keyed by scheme (``owui``, ``upload``, ``file`` for `kb ingest`, ``eval``), owner and
        ``ref`` (a file id, name or path), so ingesting it again by the same owner replaces
        it and nobody else's can."""
        key = upload_key(scheme, owner, ref)
        # Keys from before the owner was part of them (one owner's documents only).
        legacy = (
            f"{scheme}:{ref}" if scheme == WEBUI_SCHEME or owner is None
            else f"upload:{owner}:{ref}"
        )
        old = self.catalog.by_key(legacy)
        if old is not None and old.owner == owner and self.catalog.by_key(key) is None:
            key = legacy
        return Source(key, name, path, owner=owner)

    def extract_text(self, path: Path, name: str, cancel: threading.Event | None = None) -> str:
        """A file's whole extracted text (parsed in a worker, under the same limits)."""
        segments = self.parser.parse(path, name, self.limits, self._cancelled(cancel))
        return "\n\n".join(segment.text for segment in segments)

    def _cancelled(self, cancel: threading.Event | None) -> Callable[[], bool]:
        if cancel is None:
            return self.closing.is_set
        return lambda: self.closing.is_set() or cancel.is_set()

    def search(
        self, query: str, k: int = 10, viewer: str | None = None, mode: str = HYBRID,
        rerank: bool = True, *, only: Collection[str] | None = None,
        granted: Collection[str] = (),
    ) -> Results:
        """The ``k`` chunks most relevant to ``query`` that ``viewer`` may see, best first.

        ``mode`` is ``dense``, ``lexical`` or ``hybrid`` (both, fused); a
        configured reranker then re-orders the best candidates. Shared
        documents (no owner) are visible to everyone, a private one only to its
        owner and to those it is ``granted`` to (by document id); ``viewer=None``
        sees the shared documents alone. ``only``: search just these documents
        (what a chat picked; each must still be visible or granted).
        """
        self.check_index()
        granted = frozenset(granted) | frozenset(only or ())
        if only is not None:
            scope: Scope | None = Scope((), frozenset(only))
        elif granted or self.catalog.has_private():
            scope = Scope((SHARED, *([viewer] if viewer else [])), granted)
        else:  # every document is shared: filtering would only cost time
            scope = None
        use_reranker = self.reranker if rerank else None
        depth = max(k, self.rerank_top_n) if use_reranker else k
        for attempt in (1, 2):
            store = self.store
            try:
                hits = search(
                    store, query, self.embedder.embed_query, depth,
                    lambda ids: self.catalog.current_generations(ids, viewer, granted),
                    scope=scope, mode=mode, fusion=self.fusion,
                )
                break
            except Exception:
                if attempt == 2 or self.store is store:
                    raise
                # A re-index switched collections and dropped this one mid-query: again.
        if use_reranker is None:
            return Results(hits)
        ranked, warnings = rerank_hits(use_reranker, query, hits, self.rerank_top_n)
        return Results(ranked[:k], warnings)

    def answer(
        self, question: str, k: int = 5, viewer: str | None = None, mode: str = HYBRID, *,
        only: Collection[str] | None = None, granted: Collection[str] = (),
    ) -> tuple[list[Citation], Iterator[str]]:
        """Citations and the streamed answer: from the LLM, else extractive (``search``
        says what ``viewer``, ``only`` and ``granted`` allow)."""
        hits = self.search(question, k, viewer, mode, only=only, granted=granted)
        # The chat model's tokenizer is not ours: budget the prompt at 3 characters a token.
        return answer_stream(question, hits, self.llm, lambda t: len(t) // 3 + 1, self.min_score)

    def remove(self, ref: str) -> list[Document]:
        """Delete the documents whose id, key or source name is ``ref``, vectors included."""
        docs = self.catalog.find(ref)
        if not docs:
            raise DocumentNotFound(f"no document with id or name {ref!r}; see `kb status`")
        self._remove(docs)
        return docs

    def webui_files(self) -> dict[str, list[Document]]:
        """The documents uploaded through Open WebUI, by its file id."""
        files: dict[str, list[Document]] = {}
        for doc in self.catalog.with_scheme(WEBUI_SCHEME):
            files.setdefault(upload_ref(doc.key), []).append(doc)
        return files

    def webui_documents(self, files: Iterable[tuple[str, str | None]]) -> set[str]:
        """Ids of the documents uploaded as these Open WebUI files, given as (file id,
        uploader) pairs: a file's key holds its uploader (none when admin uploads are
        shared), or neither in keys minted before owners were part of them."""
        keys = set()
        for file_id, owner in files:
            keys |= {upload_key(WEBUI_SCHEME, owner, file_id),
                     upload_key(WEBUI_SCHEME, None, file_id), f"{WEBUI_SCHEME}:{file_id}"}
        return set(self.catalog.ids_by_keys(keys))

    def remove_webui_files(self, file_ids: Iterable[str]) -> list[Document]:
        """Delete the documents uploaded as these Open WebUI files (gone there)."""
        wanted = set(file_ids)
        docs = [d for f, ds in self.webui_files().items() if f in wanted for d in ds]
        self._remove(docs)
        return docs

    def _remove(self, docs: list[Document]) -> None:
        holder = object()
        with self.gate.shared():
            for doc in docs:
                self.claims.claim(doc.id, holder)
                try:
                    generation = self.catalog.remove(doc.id)
                    if generation is not None:
                        self.store.delete(doc.id, generation)
                        self.catalog.done(doc.id, generation)
                    if not self.catalog.find_hash(doc.content_hash):
                        self.originals.discard(doc.content_hash)
                finally:
                    self.claims.release(doc.id, holder)

    def reindex(self, on_outcome: Callable[[Outcome], None] | None = None) -> list[Outcome]:
        """Re-embed every document into a new collection; switch only when all succeeded."""
        with self.gate.exclusive():
            name = _new_collection_name()
            self.catalog.set_meta("reindex_collection", name)
            store = self.backend.open(name, self.embedder.dimension)
            committer = CollectingCommitter(self.catalog)
            try:
                outcomes = self._pipeline(store, committer).run(
                    self._reindex_sources(), on_outcome, force=True, cancelled=self.closing.is_set
                )
                _raise_if_failed(outcomes)
            except BaseException:
                self.backend.drop(name, store)
                self.catalog.set_meta("reindex_collection", None)
                raise
            old = self.store
            self.catalog.switch_collection(name, committer.docs)
            self._record_build()
            self._unusable = None
            self.store = store
            self.backend.drop(old.name, old)
            return outcomes

    # -- reading -------------------------------------------------------------

    def documents(self, status: str | None = None) -> list[Document]:
        """Every document (or those of one status), by source name."""
        return self.catalog.documents(status)

    def document(self, document_id: str) -> Document:
        """One document by id; ``DocumentNotFound`` when there is none."""
        doc = self.catalog.get(document_id)
        if doc is None:
            raise DocumentNotFound(
                f"no document with id {document_id!r}; list them at /v1/documents"
            )
        return doc

    def counts(self) -> dict[str, int]:
        """Documents by status and indexed chunks."""
        return self.catalog.counts()

    def readiness(self) -> dict[str, str]:
        """Each dependency's state: "ok…" or why it is not ready."""
        checks: dict[str, str] = {}
        try:
            self.backend.heartbeat()
            checks["store"] = "ok"
        except KbError as exc:
            checks["store"] = str(exc)
        try:
            self.catalog.counts()
            checks["catalog"] = "ok"
        except Exception as exc:  # sqlite errors: report, don't crash the probe
            checks["catalog"] = f"catalog unreadable: {exc}"
        checks["embedder"] = f"ok ({self.embedder.name}, {self.embedder.dimension} dims)"
        return checks

    @property
    def collection(self) -> str:
        """The name of the collection searches and uploads use now."""
        return self.store.name

    @property
    def uploads_dir(self) -> Path:
        """Where uploads are received before ingest (emptied at start)."""
        return self.data_dir / "uploads"

    def status(self) -> dict[str, Any]:
        """Counts and configuration, for `kb status` and the API."""
        return {
            "data_dir": str(self.data_dir),
            "embedding_model": self.embedder.name,
            "dimension": self.embedder.dimension,
            "chunk_tokens": self.chunker.settings.tokens,
            "chunk_overlap": self.chunker.settings.overlap,
            "dense_piece_tokens": self.piece_tokens,
            "collection": self.store.name,
            "vectors": self.store.vector_count(),
            "lexical_chunks": self.store.lexical_count(),
            "pending_writes": len(self.catalog.pending()),
            "ocr": self._ocr_engines(),
            **self.catalog.counts(),
        }

    def _ocr_engines(self) -> str:
        """``auto: rapidocr, tesseract``, or what is missing."""
        if not isinstance(self.parser, ParserPool):
            return "unknown"
        settings = self.parser.ocr
        if not settings.enabled:
            return "off"
        found, missing = ocr.available(settings)
        note = f" (missing: {'; '.join(missing)})" if missing else ""
        return f"{settings.engine}: {', '.join(found) or 'no engine'}{note}"

    def _pipeline(self, store: Store, committer: Any) -> Pipeline:
        return Pipeline(
            catalog=self.catalog, store=store, embedder=self.embedder, chunker=self.chunker,
            originals=self.originals, limits=self.limits, fingerprint=self.fingerprint,
            committer=committer, parser=self.parser, claims=self.claims,
            batch_size=self.batch_size, chunk_plan=self.chunk_plan,
            pieces=self.cutter,
        )

    def _reindex_sources(self) -> list[Source]:
        return [
            Source(d.key, d.source, self.originals.path(d.content_hash), d.owner)
            for d in self.catalog.documents(INDEXED)
        ]


def _raise_if_failed(outcomes: list[Outcome]) -> None:
    failed = [o for o in outcomes if o.status == FAILED]
    if failed:
        detail = "; ".join(f"{o.source}: {o.error}" for o in failed[:5])
        raise KbError(
            f"re-index stopped: {len(failed)} document(s) failed ({detail}); "
            "the previous index is unchanged and still in use"
        )


def _empty_folder(folder: Path) -> None:
    if folder.is_dir():
        for path in folder.iterdir():
            if path.is_file() or path.is_symlink():
                path.unlink(missing_ok=True)


def _fingerprint(embedding_id: str, chunking: ChunkSettings, piece_tokens: int) -> str:
    """What produced a document's vectors; a change re-embeds it on the next ingest."""
    spec: dict[str, object] = {
        "parser": PARSER_VERSION, "embedding": embedding_id, "store": STORE_VERSION,
        "chunk_tokens": chunking.tokens, "chunk_overlap": chunking.overlap}
    if piece_tokens:  # absent when off, so indexes made before pieces stay current
        spec["piece_tokens"] = piece_tokens
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _new_collection_name() -> str:
    """Letters, digits and underscores: a valid name in Chroma and in Milvus."""
    return f"kb_{uuid.uuid4().hex[:12]}"


def _lock_data_dir(data_dir: Path) -> Any:
    """Hold an exclusive lock: embedded Chroma and the catalog allow one process."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(data_dir / "kb.lock", "a+")  # noqa: SIM115 - held for the object's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise DataDirBusy(
            f"data directory {data_dir} is in use by another kb process (pid {holder}), "
            "e.g. `kb serve`; stop it, or use its HTTP API instead"
        ) from None
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    return handle
