"""Parsing in worker processes, each file under the operating system's limits.

A hostile file can make a parser spin for hours (a PDF page drawing one
stream a million times) or build gigabytes of tree (a DOCX of empty
paragraphs). So files are parsed in child processes (``python -m
ingest.workers``), never in the service: each child runs with an address-space
cap (``RLIMIT_AS``) and, per file, a CPU-time budget (``RLIMIT_CPU``; the kernel
stops the child with SIGXCPU). A wall-clock backstop kills a child that waits
on nothing. A child that dies fails only its file and is replaced; the pool
keeps at most ``workers`` children, reused across files.

Segments stream back in batches, so a large document is chunked and embedded
while it is still being parsed. When the embedding model's tokenizer is a local
file (``ChunkPlan``), the child chunks too and sends chunks: token counting is
then spread over the workers instead of holding the service's interpreter.

OCR (``ingest.ocr``) runs here too, with budgets of its own: each page read by OCR
gets ``KB_OCR_PAGE_SECONDS`` of CPU time (the file's budget is paused meanwhile, and
the child tells the parent, which extends its wall-clock backstop), and a document
may have at most ``KB_OCR_MAX_PAGES`` pages read. A page over its time fails the file
with a reason that names the page and the setting.
"""

from __future__ import annotations

import functools
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ingest.loaders import Limits, load
from ingest.ocr import OcrSettings, PageCounts, Reader
from retrieval.errors import Cancelled, ExtractionFailed, InvalidDocument, LimitExceeded
from retrieval.types import Chunk, Segment

if TYPE_CHECKING:
    from ingest.chunking import Chunker, ChunkSettings

MB = 2**20
REPLY_CHARS = 1 << 20  # segments are sent back in batches of about this much text
CHUNK_SECONDS = 600  # CPU time to chunk one segment (a block of text, a page) in a worker
POLL_SECONDS = 0.1
WALL_FACTOR, WALL_SLACK = 3, 30  # wall-clock backstop: 3 × the CPU budget + 30 s


@dataclass(frozen=True)
class ParseBudget:
    """What one file may cost to parse: CPU seconds, and memory of the whole worker."""

    cpu_seconds: int = 120
    memory_mb: int = 3072

    def cpu_error(self, name: str) -> LimitExceeded:
        return LimitExceeded(
            f"parsing {name} used more than {self.cpu_seconds} s of CPU time and was stopped: "
            "the file is unusually costly to read (e.g. a page drawn millions of times); "
            "if it is genuine, raise KB_PARSE_CPU_SECONDS"
        )

    def memory_error(self, name: str) -> LimitExceeded:
        return LimitExceeded(
            f"parsing {name} needed more than {self.memory_mb} MB of memory and was stopped; "
            "if the file is genuine, raise KB_PARSE_MEMORY_MB or split the file"
        )


Cancel = Callable[[], bool]
Parsed = Generator[Segment, None, PageCounts]  # segments, then the page counts
Chunked = Generator[Chunk, None, PageCounts]  # chunks, then the page counts


@dataclass(frozen=True)
class ChunkPlan:
    """How a worker chunks what it parses: the settings, in the tokens of this file."""

    settings: ChunkSettings
    tokenizer: Path


def never() -> bool:
    """A ``Cancel`` that never cancels."""
    return False


class Parser(Protocol):
    """Turns a stored file into segments (``ingest.workers.ParserPool``)."""

    size: int  # files it parses at once

    def parse(
        self, path: Path, name: str, limits: Limits, cancelled: Cancel = never
    ) -> Parsed:
        """Stream the file's segments and return its page counts; raise InvalidDocument,
        or Cancelled."""

    def chunks(
        self, path: Path, name: str, limits: Limits, plan: ChunkPlan, cancelled: Cancel = never
    ) -> Chunked:
        """As ``parse``, but chunked by ``plan`` (the chunks' document fields are left
        for the caller: id, generation and owner are empty)."""

    def close(self) -> None:
        """Stop any helper processes."""


class _Worker:
    """One child process and the two pipes to it."""

    def __init__(self, budget: ParseBudget) -> None:
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ingest.workers", str(request_read), str(reply_write),
             str(budget.memory_mb * MB)],
            pass_fds=(request_read, reply_write), stdin=subprocess.DEVNULL,
            # Two malloc arenas, not one per thread: OCR's threads would each reserve 64 MB
            # of the address space the memory cap counts.
            env={**os.environ, "MALLOC_ARENA_MAX": "2"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(request_read)
        os.close(reply_write)
        self.requests = Connection(request_write, readable=False)
        self.replies = Connection(reply_read, writable=False)

    def kill(self) -> None:
        """Stop the child now and release its pipes."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.requests.close()
        self.replies.close()

    def death(self, budget: ParseBudget, name: str) -> InvalidDocument:
        """Why the child ended, as the error for the file it was parsing."""
        code = self.process.wait()
        if code == -signal.SIGXCPU:
            return budget.cpu_error(name)
        if code == -signal.SIGKILL:  # the kernel's OOM killer, or our backstop
            return budget.memory_error(name)
        return ExtractionFailed(
            f"the parser stopped unexpectedly while reading {name} (exit status {code}); "
            "the file is probably damaged: open it in the program that made it and save it again"
        )


class ParserPool:
    """Parses files in up to ``workers`` child processes, one file per child at a time."""

    def __init__(
        self, workers: int, budget: ParseBudget | None = None, ocr: OcrSettings | None = None
    ) -> None:
        self.size, self.budget = max(1, workers), budget or ParseBudget()
        self.ocr = ocr or OcrSettings()
        self._slots = threading.BoundedSemaphore(self.size)
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = self._spawning = False
        self._busy = 0

    def parse(
        self, path: Path, name: str, limits: Limits, cancelled: Cancel = never
    ) -> Parsed:
        """Stream the segments of one file and return its page counts; raise
        InvalidDocument, or Cancelled."""
        return (yield from self._stream(path, name, limits, None, cancelled))

    def chunks(
        self, path: Path, name: str, limits: Limits, plan: ChunkPlan, cancelled: Cancel = never
    ) -> Chunked:
        """Stream the chunks of one file (document fields empty) and return its page
        counts; raise InvalidDocument, or Cancelled."""
        return (yield from self._stream(path, name, limits, plan, cancelled))

    def _stream(
        self, path: Path, name: str, limits: Limits, plan: ChunkPlan | None, cancelled: Cancel
    ) -> Generator[Any, None, PageCounts]:
        while not self._slots.acquire(timeout=POLL_SECONDS):
            if cancelled():
                raise Cancelled("cancelled while waiting for a parser")
        try:
            worker = self._checkout()
            healthy = False
            try:
                counts = yield from self._run(worker, path, name, limits, plan, cancelled)
                healthy = True
                return counts
            finally:
                self._checkin(worker, healthy)
        finally:
            self._slots.release()

    def close(self) -> None:
        """Stop every idle child (busy ones are stopped by their callers)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()

    def _checkout(self) -> _Worker:
        worker = None
        with self._lock:
            self._busy += 1
            while self._idle and worker is None:
                candidate = self._idle.pop()
                if candidate.process.poll() is None:
                    worker = candidate
                else:
                    candidate.kill()
        worker = worker or _Worker(self.budget)
        self._keep_spare()
        return worker

    def _checkin(self, worker: _Worker, healthy: bool) -> None:
        with self._lock:
            self._busy -= 1
            if healthy and not self._closed:
                self._idle.append(worker)
                return
        worker.kill()  # mid-file (cancelled, failed, abandoned): its state is unknown
        self._keep_spare()

    def _keep_spare(self) -> None:
        """While a slot is free, keep one child started, so the next upload (another
        user's, while this one is parsed) does not wait for a Python start (~0.4 s)."""
        with self._lock:
            if self._closed or self._spawning or self._idle or self._busy >= self.size:
                return
            self._spawning = True
        threading.Thread(target=self._start_spare, name="kb-parser-spare", daemon=True).start()

    def _start_spare(self) -> None:
        worker = _Worker(self.budget)
        with self._lock:
            self._spawning = False
            if not self._closed:
                self._idle.append(worker)
                return
        worker.kill()

    def _run(
        self, worker: _Worker, path: Path, name: str, limits: Limits, plan: ChunkPlan | None,
        cancelled: Cancel,
    ) -> Generator[Any, None, PageCounts]:
        try:
            task = (str(path), name, limits, self.budget.cpu_seconds, self.ocr, plan)
            worker.requests.send(task)
        except OSError:
            raise worker.death(self.budget, name) from None
        deadline = time.monotonic() + self.budget.cpu_seconds * WALL_FACTOR + WALL_SLACK
        reading: int | None = None  # the page being read by OCR
        while True:
            if cancelled():
                raise Cancelled(f"cancelled while parsing {name}")
            if time.monotonic() > deadline:
                worker.kill()
                raise self.budget.cpu_error(name) if reading is None else self.ocr.page_error(
                    reading)
            try:
                if not worker.replies.poll(POLL_SECONDS):
                    continue
                kind, payload = worker.replies.recv()
            except (EOFError, OSError):
                if reading is not None and worker.process.wait() == -signal.SIGXCPU:
                    raise self.ocr.page_error(reading) from None  # the page's CPU budget
                raise worker.death(self.budget, name) from None
            if kind == "parts":  # segments, or chunks
                yield from payload
            elif kind == "ocr":  # a page starts (its number) or ends (None) being read
                reading = payload
                if reading is not None:
                    deadline += self.ocr.page_seconds * WALL_FACTOR
            elif kind == "done":
                return payload  # type: ignore[no-any-return]
            elif kind == "memory":
                raise self.budget.memory_error(name)
            else:
                raise payload


# -- the child process -----------------------------------------------------------


def _budget_cpu(seconds: int) -> None:
    """Allow ``seconds`` more CPU time from now; the kernel sends SIGXCPU past it."""
    used = int(_cpu_used()) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (_capped(used + seconds, resource.RLIMIT_CPU),
                                             resource.getrlimit(resource.RLIMIT_CPU)[1]))


def _capped(value: int, which: int) -> int:
    """``value``, or the hard limit when that is lower (only root may raise it)."""
    hard = resource.getrlimit(which)[1]
    return value if hard == resource.RLIM_INFINITY else min(value, hard)


def _peak_address_space() -> int:
    """Bytes: the most address space this process has held (Linux), else 0."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmPeak:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _page_budget(settings: OcrSettings, replies: Connection) -> Reader:
    """An OCR reader whose every page gets ``page_seconds`` of CPU time, the file's own
    budget paused meanwhile, and which tells the parent when a page starts and ends."""
    paused = [0.0]

    def before(page: int) -> None:
        replies.send(("ocr", page))
        paused[0] = resource.getrlimit(resource.RLIMIT_CPU)[0] - _cpu_used()
        _budget_cpu(settings.page_seconds)

    def after() -> None:
        _budget_cpu(max(1, int(paused[0])))
        replies.send(("ocr", None))

    return Reader(settings, before, after)


def _budget_paused(segments: Iterator[Segment]) -> Iterator[Segment]:
    """The segments, the file's CPU budget paused while each is chunked: the budget is
    for the parser (chunking is kb's own work, bounded by the text)."""
    for segment in segments:
        remaining = resource.getrlimit(resource.RLIMIT_CPU)[0] - _cpu_used()
        _budget_cpu(CHUNK_SECONDS)
        yield segment
        _budget_cpu(max(1, int(remaining)))


def _cpu_used() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _parse_one(task: Any, replies: Connection) -> None:
    path, name, limits, cpu_seconds, ocr, plan = task
    _budget_cpu(cpu_seconds)
    reader = _page_budget(ocr, replies)
    try:
        with open(path, "rb") as stream:
            segments = load(stream, name, limits, reader)
            parts: Iterator[Segment | Chunk] = segments if plan is None else _chunker(
                plan).chunks(_budget_paused(segments), document_id="", source=name,
                             generation=0)
            batch: list[Segment | Chunk] = []
            size = 0
            for part in parts:
                batch.append(part)
                size += len(part.text)
                if size >= REPLY_CHARS:
                    replies.send(("parts", batch))
                    batch, size = [], 0
            replies.send(("parts", batch))
        replies.send(("done", reader.counts))
    except InvalidDocument as exc:
        # Out of memory, lxml and pypdf report a parse error ("unknown error"): a worker
        # that came near its cap reports the cap instead. Only for a library's error:
        # kb's own reasons (limits, no text) stand.
        library = exc.__cause__ is not None and not isinstance(exc.__cause__, InvalidDocument)
        near_cap = _peak_address_space() > resource.getrlimit(resource.RLIMIT_AS)[0] * 0.6
        replies.send(("memory", None) if library and near_cap else ("error", exc))
    except MemoryError:
        replies.send(("memory", None))
        raise  # the heap may be in pieces: let the parent start a fresh child
    except OSError as exc:
        replies.send(("error", ExtractionFailed(f"cannot read file: {exc.strerror or exc}")))


@functools.cache
def _chunker(plan: ChunkPlan) -> Chunker:
    """One chunker per plan for the child's life (its token counts are cached)."""
    from ingest.chunking import Chunker  # only children that chunk load the splitter
    from retrieval.embedders.base import fast_tokenizer

    return Chunker(plan.settings, fast_tokenizer(plan.tokenizer))


def main(argv: list[str]) -> None:
    """Child entry point: parse the files the parent sends until it closes the pipe."""
    import logging
    import warnings

    logging.disable(logging.CRITICAL)  # library chatter about malformed files is not ours
    warnings.simplefilter("ignore")
    requests, replies = Connection(int(argv[0]), writable=False), Connection(int(argv[1]),
                                                                             readable=False)
    memory = int(argv[2])
    resource.setrlimit(resource.RLIMIT_AS, (_capped(memory, resource.RLIMIT_AS),
                                            resource.getrlimit(resource.RLIMIT_AS)[1]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    while True:
        try:
            task = requests.recv()
        except (EOFError, OSError):
            return
        _parse_one(task, replies)


if __name__ == "__main__":
    main(sys.argv[1:])
