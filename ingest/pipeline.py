"""The ingest pipeline: parse → chunk → embed → write, shared by the CLI and the API.

A producer thread hashes and stores each file, has it parsed in a worker
process (``ingest.workers``, under CPU and memory limits) and chunks the text,
while the calling thread embeds chunks in batches that span documents and
writes them. A document becomes visible only when all its chunks are written
(see ``ingest.catalog`` for the write protocol); a file that fails leaves
nothing behind and the batch goes on. On any other error, cancellation or
Ctrl-C, the documents in flight are rolled back before the error propagates.

Several runs may go on at once (one per upload): ``Claims`` makes a second
run that reaches a document another run is writing wait for it, so the
generations of one document never interleave.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol, TypeVar
from urllib.parse import quote, unquote

from ingest.catalog import INDEXED, Catalog, Document
from ingest.chunking import Chunker
from ingest.claims import Claims
from ingest.loaders import Limits, detect_type
from ingest.ocr import PageCounts
from ingest.originals import Originals
from ingest.pieces import PieceCutter, grouped
from ingest.workers import Cancel, ChunkPlan, Parser, never
from retrieval.embedders import Embedder, Queued
from retrieval.errors import Cancelled, InvalidDocument
from retrieval.stores import ChunkVectors, VectorStore
from retrieval.types import Chunk, Segment

log = logging.getLogger(__name__)
T = TypeVar("T")

ADDED, UPDATED, UNCHANGED, FAILED = "added", "updated", "unchanged", "failed"
QUEUE_DEPTH = 512
# Files in flight per parser worker a run may use: while a slow file (a PDF) is
# forwarded, later ones keep the workers busy (x4 measured ~1.3x faster than x1).
LOOK_AHEAD = 4
AHEAD_BYTES = 4 * 2**20  # larger files are read when every file before them is
HEAD_BYTES = 8192
POLL_SECONDS = 0.2
# A batch this large goes to the embedder before it is full when the embedder has
# nothing to do: at the start of a run (the first 256 chunks took 0.5 s of parsing, the
# embedder idle), and whenever the parsers fall behind it.
EAGER_CHUNKS = 32
CANCELLED = "ingest cancelled: the documents in flight were rolled back"


@dataclass(frozen=True)
class Source:
    """One file to ingest: ``key`` is its identity (re-ingesting a key replaces it)."""

    key: str
    name: str
    path: Path
    owner: str | None = None

    @property
    def document_id(self) -> str:
        """Stable id derived from the key."""
        return document_id(self.key)


def upload_key(scheme: str, owner: str | None, ref: str) -> str:
    """An upload's key: scheme, owner ("" when shared) and ref, each percent-encoded, so
    no two (owner, ref) pairs meet in one key whatever ':' they hold."""
    return ":".join((scheme, quote(owner or "", safe=""), quote(ref, safe="")))


def upload_ref(key: str) -> str:
    """The ref an upload key was minted from (its last part), e.g. Open WebUI's file id."""
    return unquote(key.rpartition(":")[2])


def document_id(key: str) -> str:
    """The document id for a key: short, stable, URL-safe."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass
class Outcome:
    """What happened to one file."""

    source: str
    status: str
    document_id: str
    chunks: int = 0
    error: str | None = None


class Committer(Protocol):
    """How finished documents become visible (normal ingest or re-index)."""

    def generation(self, document_id: str) -> int:
        """Generation to stamp on the document's new chunks."""

    def begin(self, doc: Document) -> None:
        """Before the first chunk of ``doc`` is written."""

    def commit(self, doc: Document) -> str:
        """All chunks written: make ``doc`` current; returns added/updated."""

    def settle(self) -> None:
        """After a run of commits: remove what they replaced."""

    def abort(self, doc: Document) -> None:
        """Remove whatever was written for ``doc``."""


@dataclass
class _Start:
    doc: Document


@dataclass
class _End:
    document_id: str
    counts: PageCounts | None = None


@dataclass
class _Fail:
    document_id: str
    error: str


@dataclass
class _Copied:
    """Chunks with vectors taken from an identical indexed file."""

    chunks: list[Chunk]
    vectors: ChunkVectors


@dataclass
class _Rejected:
    """A file refused before parsing (limit, type, unreadable)."""

    doc: Document


_EOF = object()
Event = Outcome | _Start | Chunk | _Copied | _End | _Fail | _Rejected


@dataclass
class _Pending:
    """A batch being embedded, and the documents complete once it is written."""

    batch: list[Chunk]
    queued: Queued  # with the embedder
    vectors: Future[ChunkVectors]
    ended: list[str]


@dataclass
class _State:
    embedding: ThreadPoolExecutor
    inflight: dict[str, Document] = field(default_factory=dict)
    ended: list[str] = field(default_factory=list)
    batch: list[Chunk] = field(default_factory=list)
    pending: _Pending | None = None
    outcomes: list[Outcome] = field(default_factory=list)


class Pipeline:
    """Ingests sources into one store, reporting an ``Outcome`` per file."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        store: VectorStore,
        embedder: Embedder,
        chunker: Chunker,
        originals: Originals,
        limits: Limits,
        fingerprint: str,
        committer: Committer,
        parser: Parser,
        claims: Claims | None = None,
        batch_size: int = 64,
        chunk_plan: ChunkPlan | None = None,
        pieces: PieceCutter | None = None,
    ) -> None:
        self.catalog, self.store, self.embedder = catalog, store, embedder
        self.chunker, self.originals, self.limits = chunker, originals, limits
        self.fingerprint, self.committer, self.batch_size = fingerprint, committer, batch_size
        self.parser, self.claims = parser, claims or Claims()
        # With a plan, the parser workers chunk (the same cuts ``chunker`` makes).
        self.chunk_plan = chunk_plan
        self.pieces = pieces  # when set, a vector per dense piece of each chunk
        # When set (``keep_text``), the text each parsed document yielded, by document id.
        self.texts: dict[str, list[str]] | None = None

    def run(
        self,
        sources: Iterable[Source],
        on_outcome: Callable[[Outcome], None] | None = None,
        force: bool = False,
        cancelled: Cancel = never,
        keep_text: bool = False,
    ) -> list[Outcome]:
        """Ingest every source; one file's failure never stops the others.

        ``cancelled`` is polled: once it returns true the run rolls back what is
        in flight and raises ``Cancelled``. With ``keep_text`` the text of each
        parsed document is kept in ``self.texts`` (one parse serves both).
        """
        self.texts = {} if keep_text else None
        events: queue.Queue[object] = queue.Queue(maxsize=QUEUE_DEPTH)
        stop = threading.Event()
        producer = threading.Thread(
            target=self._produce,
            args=(sources, events, stop, force, lambda: stop.is_set() or cancelled()),
            daemon=True,
        )
        producer.start()
        state = _State(ThreadPoolExecutor(1, thread_name_prefix="kb-embed-batch"))
        report = on_outcome or (lambda _: None)
        try:
            while (event := self._next(events, state, report, cancelled)) is not _EOF:
                self._consume(event, state, report)  # type: ignore[arg-type]
            if cancelled():  # the producer stopped short
                raise Cancelled(CANCELLED)
            self._flush(state, report)
            self._write_pending(state, report)
        except BaseException:
            stop.set()
            self._rollback(state)
            raise
        finally:
            stop.set()
            if state.pending is not None:  # rolled back: its vectors are not wanted
                state.pending.queued.cancel()
            state.embedding.shutdown(wait=False, cancel_futures=True)
            producer.join(timeout=10)
            self.claims.release_all(self)
        return state.outcomes

    def _next(
        self, events: queue.Queue[object], state: _State, report: Callable[[Outcome], None],
        cancelled: Cancel,
    ) -> object:
        """The next event; while none comes, finish ended documents (another run may wait)."""
        while True:
            if cancelled():
                raise Cancelled(CANCELLED)
            try:
                return events.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if state.ended or state.pending is not None:  # a pause: finish what can be
                    self._flush(state, report)
                    self._write_pending(state, report)

    # -- producer thread ----------------------------------------------------

    def _produce(
        self, sources: Iterable[Source], out: queue.Queue[object], stop: threading.Event,
        force: bool, cancelled: Cancel,
    ) -> None:
        seen: set[str] = set()
        try:
            with closing(self._in_order(sources, seen, force, cancelled)) as streams:
                for events in streams:
                    for event in events:
                        if not _put(out, event, stop):
                            return
        except Cancelled:
            return  # the consumer sees the cancellation itself
        except Exception as exc:  # a bug or an unreadable source list: end the run honestly
            log.exception("ingest producer failed")
            _put(out, _Fail("", f"internal error: {exc}"), stop)
        finally:
            _put(out, _EOF, stop)

    def _in_order(
        self, sources: Iterable[Source], seen: set[str], force: bool, cancelled: Cancel
    ) -> Generator[Iterator[Event], None, None]:
        """Each new source's events, in source order. While one is forwarded, the next
        few are read, parsed and chunked ahead on pool threads, so a run keeps the
        parser workers busy (a GPU embedder outruns one parser). One run uses all the
        workers but one: the last is kept for other uploads, which never wait behind
        a run's slow files."""
        share = self.parser.size - 1
        if share <= 1:
            for source in _new(sources, seen):
                yield self._events(source, force, seen, cancelled)
            return
        window: deque[_Ahead] = deque()
        width = share * LOOK_AHEAD
        turns = threading.BoundedSemaphore(share)
        with ThreadPoolExecutor(width, thread_name_prefix="kb-parse") as pool:
            try:
                for source in _new(sources, seen):
                    ahead = _Ahead(cancelled, _small(source.path), list(window), turns)
                    pool.submit(ahead.fill, self._events(source, force, seen, cancelled))
                    window.append(ahead)
                    if len(window) == width:
                        yield window[0].drain()
                        window.popleft()
                while window:
                    yield window[0].drain()
                    window.popleft()
            finally:
                for ahead in window:  # stopped early: the threads give up their files
                    ahead.drop()

    def _events(
        self, source: Source, force: bool, seen: set[str], cancelled: Cancel
    ) -> Generator[Event, None, None]:
        doc_id = source.document_id
        try:
            with source.path.open("rb") as f:  # the type first: a refused file is not stored
                kind = detect_type(source.name, f.read(HEAD_BYTES))
            content_hash, size, stored = self.originals.put(source.path, self.limits.max_file_bytes)
        except InvalidDocument as exc:
            yield self._rejected(source, str(exc))
            return
        except OSError as exc:
            yield self._rejected(source, f"cannot read file: {exc.strerror or exc}")
            return
        self.claims.claim(doc_id, self, cancelled)
        existing = self.catalog.get(doc_id)
        if (
            not force and existing is not None and existing.status == INDEXED
            and existing.content_hash == content_hash and existing.fingerprint == self.fingerprint
            and existing.owner == source.owner
        ):
            self.claims.release(doc_id, self)
            yield Outcome(source.name, UNCHANGED, doc_id, existing.chunks)
            return
        doc = Document(
            id=doc_id, key=source.key, source=source.name, content_hash=content_hash, type=kind,
            size=size, status="writing", generation=self.committer.generation(doc_id),
            fingerprint=self.fingerprint, owner=source.owner,
        )
        yield _Start(doc)
        copied = None if force else self._copy(doc, seen)
        if copied is not None:
            copies, twin = copied
            yield from copies
            counts = None if twin.pages is None else PageCounts(
                twin.pages, twin.ocr_pages, twin.blank_pages)
            yield _End(doc.id, counts)
        else:
            yield from self._parse(doc, stored, cancelled)

    def _copy(
        self, doc: Document, seen: set[str]
    ) -> tuple[list[_Copied], Document] | None:
        """Vectors of the same content already indexed under another key that the
        uploader may see (and that twin), so nothing is embedded; ``None`` when none."""
        twin = self.catalog.twin(doc.content_hash, self.fingerprint, doc.id, doc.owner)
        # A twin this run has touched may be swapping generations under us: parse instead.
        if twin is None or twin.key in seen:
            return None
        copies = []
        for chunks, vectors in self.store.stored(twin.id, twin.generation):
            mine = [
                replace(c, document_id=doc.id, source=doc.source, generation=doc.generation,
                        owner=doc.owner)
                for c in chunks
            ]
            copies.append(_Copied(mine, vectors))
        # Another run may have replaced or removed the twin meanwhile: then parse.
        return (copies, twin) if sum(len(c.chunks) for c in copies) == twin.chunks else None

    def _parse(self, doc: Document, stored: Path, cancelled: Cancel) -> Iterator[Event]:
        counts: list[PageCounts] = []
        try:
            # The worker chunks files of up to AHEAD_BYTES: a larger one's chunking
            # (minutes for 200 MB of text) stays here, under no parse budget.
            if self.chunk_plan is not None and self.texts is None and _small(stored):
                chunked = self.parser.chunks(stored, doc.source, self.limits, self.chunk_plan,
                                             cancelled)
                for chunk in _returned(chunked, counts):
                    yield replace(chunk, document_id=doc.id, generation=doc.generation,
                                  owner=doc.owner)
            else:
                segments: Iterator[Segment] = _returned(
                    self.parser.parse(stored, doc.source, self.limits, cancelled), counts)
                if self.texts is not None:  # the text is wanted too: chunk here
                    segments = _kept(segments, self.texts.setdefault(doc.id, []))
                yield from self.chunker.chunks(
                    segments, document_id=doc.id, source=doc.source,
                    generation=doc.generation, owner=doc.owner,
                )
        except InvalidDocument as exc:
            yield _Fail(doc.id, str(exc))
            return
        except Cancelled:
            raise
        except Exception as exc:  # a chunker bug must fail this file, not the batch
            log.exception("unexpected error reading %s", doc.source)
            yield _Fail(doc.id, f"could not read this {doc.type.upper()} file: {exc}")
            return
        yield _End(doc.id, counts[0] if counts else None)

    def _rejected(self, source: Source, error: str) -> _Rejected:
        try:
            size = source.path.stat().st_size
        except OSError:
            size = 0
        kind = source.path.suffix.lower().lstrip(".") or "unknown"
        return _Rejected(Document(
            id=source.document_id, key=source.key, source=source.name, content_hash="",
            type=kind, size=size, status=FAILED, error=error, owner=source.owner,
        ))

    # -- consumer (calling thread) -------------------------------------------

    def _consume(self, event: Event, state: _State, report: Callable[[Outcome], None]) -> None:
        if isinstance(event, Chunk):
            state.batch.append(event)
            state.inflight[event.document_id].chunks += 1
            size = len(state.batch)
            if size >= self.batch_size or (size >= EAGER_CHUNKS and _idle(state.pending)):
                self._flush(state, report)
        elif isinstance(event, _Copied):
            self.store.add(event.chunks, event.vectors)
            state.inflight[event.chunks[0].document_id].chunks += len(event.chunks)
        elif isinstance(event, _Start):
            event.doc.chunks = 0
            state.inflight[event.doc.id] = event.doc  # first: a Ctrl-C in begin still rolls back
            self.committer.begin(event.doc)
        elif isinstance(event, _End):
            doc = state.inflight[event.document_id]
            if event.counts is not None and event.counts.pages:
                doc.pages = event.counts.pages
                doc.ocr_pages, doc.blank_pages = event.counts.ocr, event.counts.blank
            if doc.chunks == 0:
                self._fail(state, _Fail(event.document_id, "no extractable text"), report)
            else:
                state.ended.append(event.document_id)
        elif isinstance(event, _Fail):
            self._fail(state, event, report)
        elif isinstance(event, _Rejected):
            doc = event.doc
            self.catalog.record_failure(doc)
            self._record(state, Outcome(doc.source, FAILED, doc.id, error=doc.error), report)
        else:
            self._record(state, event, report)

    def _flush(self, state: _State, report: Callable[[Outcome], None]) -> None:
        """Send the batch to be embedded, and write the one before it meanwhile: the
        embedder (a GPU server, or the CPU's other core) never waits on a write."""
        batch, ended = state.batch, state.ended
        state.batch, state.ended = [], []
        if not batch:
            self._write_pending(state, report)
            self._commit(state, ended, report)
            return
        # Queued behind the batch being embedded (one embedding thread) before that
        # one is written: the embedder never waits for a write. Writing first left
        # it idle for each batch's write, 3.5 s of a 40 s ingest of 1,000 abstracts.
        previous = state.pending
        state.pending = _Pending(batch, *self._embed(batch, state.embedding), ended)
        if previous is not None:
            self._write(previous, state, report)

    def _embed(self, batch: list[Chunk], embedding: ThreadPoolExecutor
               ) -> tuple[Queued, Future[ChunkVectors]]:
        """The batch queued with the embedder, and its vectors to come: one per chunk, or
        one per dense piece of each.

        Pieces are cut here, while the embedder is still on the batch before:
        cut on the embedding thread, beside the write of that batch, a cut took
        four to six times as long (the GIL), and the embedder waited for it. The
        batch is queued here too, behind that one: queued only once the thread
        waiting for it was free, it waited for the GIL while the writer held it
        through Chroma's upsert of the batch before, and the embedder idled.
        """
        if self.pieces is None:
            queued = self.embedder.queue_documents([c.indexed_text for c in batch])
            return queued, embedding.submit(queued.wait)
        texts = self.pieces.split(batch)
        queued = self.embedder.queue_documents([t for group in texts for t in group])
        return queued, embedding.submit(lambda: grouped(queued.wait(), [len(g) for g in texts]))

    def _write_pending(self, state: _State, report: Callable[[Outcome], None]) -> None:
        """Write the batch being embedded, then commit the documents it completes."""
        pending, state.pending = state.pending, None
        if pending is not None:
            self._write(pending, state, report)

    def _write(self, pending: _Pending, state: _State, report: Callable[[Outcome], None]
               ) -> None:
        """Write an embedded batch, then commit the documents it completes."""
        try:
            vectors = pending.vectors.result()
        except BaseException:  # Ctrl-C or a failure: what is still queued is not wanted
            pending.queued.cancel()
            raise
        self.store.add(pending.batch, vectors)
        self._commit(state, pending.ended, report)

    def _commit(self, state: _State, ended: list[str], report: Callable[[Outcome], None]
                ) -> None:
        finished = [state.inflight[doc_id] for doc_id in ended]
        statuses = []
        for doc in finished:  # in flight (rolled back on Ctrl-C) until committed
            statuses.append(self.committer.commit(doc))
            del state.inflight[doc.id]
        self.committer.settle()
        for doc in finished:
            self.claims.release(doc.id, self)
        for doc, status in zip(finished, statuses, strict=True):
            self._record(state, Outcome(doc.source, status, doc.id, doc.chunks), report)

    def _fail(self, state: _State, event: _Fail, report: Callable[[Outcome], None]) -> None:
        doc = state.inflight.get(event.document_id)
        if doc is None:  # the producer itself broke
            raise RuntimeError(event.error)
        state.batch = [c for c in state.batch if c.document_id != doc.id]
        pending = state.pending
        if pending is not None and any(c.document_id == doc.id for c in pending.batch):
            self._write_pending(state, report)  # so that the abort removes those chunks too
        del state.inflight[doc.id]
        self.committer.abort(doc)
        doc.error = event.error
        self._record(state, Outcome(doc.source, FAILED, doc.id, error=event.error), report)
        self.catalog.record_failure(doc)  # never overwrites an indexed version
        self.claims.release(doc.id, self)

    def _record(self, state: _State, outcome: Outcome, report: Callable[[Outcome], None]) -> None:
        state.outcomes.append(outcome)
        report(outcome)

    def _rollback(self, state: _State) -> None:
        for doc in state.inflight.values():
            try:
                self.committer.abort(doc)
            except Exception:  # the store may be what failed; recovery finishes the job
                log.warning("rollback of %s deferred to the next start", doc.source)


def _idle(pending: _Pending | None) -> bool:
    """Whether the embedder has nothing to do: no batch sent, or the last one embedded."""
    return pending is None or pending.vectors.done()


def _returned(
    parsed: Generator[T, None, PageCounts | None], into: list[PageCounts]
) -> Iterator[T]:
    """The segments of ``parsed``; what it returns (the page counts) goes into ``into``."""
    counts = yield from parsed
    if counts is not None:
        into.append(counts)


def _kept(segments: Iterator[Segment], texts: list[str]) -> Iterator[Segment]:
    for segment in segments:
        texts.append(segment.text)
        yield segment


def _small(path: Path) -> bool:
    """Whether a file is small enough to be read ahead whole (its text kept in memory)."""
    try:
        return path.stat().st_size <= AHEAD_BYTES
    except OSError:
        return False  # it fails on its own turn


def _new(sources: Iterable[Source], seen: set[str]) -> Iterator[Source]:
    """The sources whose key this run has not had yet (each key is ingested once)."""
    for source in sources:
        if source.key not in seen:
            seen.add(source.key)
            yield source


@dataclass
class _Raised:
    error: BaseException


class _Ahead:
    """One source's events, made on a pool thread into a buffer and forwarded from it
    in order. A small file is read ahead whole. A large one starts only once every
    file before it is read, and then waits while its bounded buffer is full: the
    workers it may hold are then not needed by any file before it (no deadlock)."""

    _END = object()

    def __init__(self, cancelled: Cancel, small: bool, earlier: list[_Ahead],
                 turns: threading.BoundedSemaphore) -> None:
        self.buffer: queue.Queue[object] = queue.Queue(maxsize=0 if small else QUEUE_DEPTH)
        self.cancelled, self.dropped = cancelled, False
        self.earlier = [] if small else earlier
        self.turns = turns  # the run's share of the parser workers
        self.done = threading.Event()

    def fill(self, events: Generator[Event, None, None]) -> None:
        try:
            if all(self._wait(ahead.done) for ahead in self.earlier) and self._turn():
                try:
                    for event in events:
                        if not self._put(event):
                            return
                finally:
                    self.turns.release()
        except BaseException as exc:  # the forwarding thread raises it, in order
            self._put(_Raised(exc))
        finally:
            events.close()  # given up early: the parser and claim are released now
            self._put(self._END)
            self.done.set()

    def drain(self) -> Iterator[Event]:
        while True:
            try:
                item = self.buffer.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if self._stopped():
                    raise Cancelled(CANCELLED) from None
                continue
            if item is self._END:
                return
            if isinstance(item, _Raised):
                raise item.error
            yield item  # type: ignore[misc]

    def drop(self) -> None:
        self.dropped = True

    def _turn(self) -> bool:
        return _until(lambda: self.turns.acquire(timeout=POLL_SECONDS), self._stopped)

    def _wait(self, turn: threading.Event) -> bool:
        return _until(lambda: turn.wait(POLL_SECONDS), self._stopped)

    def _put(self, item: object) -> bool:
        return _until(lambda: _offered(self.buffer, item), self._stopped)

    def _stopped(self) -> bool:
        return self.dropped or self.cancelled()


def _put(out: queue.Queue[object], item: object, stop: threading.Event) -> bool:
    """Put unless the consumer has stopped; returns False when it has."""
    return _until(lambda: _offered(out, item), stop.is_set)


def _until(step: Callable[[], bool], stopped: Callable[[], bool]) -> bool:
    """Retry ``step`` (which waits up to a poll interval) until it succeeds: True, or
    until ``stopped``: False."""
    while not stopped():
        if step():
            return True
    return False


def _offered(out: queue.Queue[object], item: object) -> bool:
    """Put ``item`` if there is room within a poll interval."""
    try:
        out.put(item, timeout=POLL_SECONDS)
        return True
    except queue.Full:
        return False
