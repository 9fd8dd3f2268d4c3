"""The parser pool: real child processes under real CPU-time and memory limits."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.chunking import Chunker, ChunkSettings
from ingest.loaders import Limits
from ingest.workers import ChunkPlan, ParseBudget, ParserPool
from retrieval.embedders import fast_tokenizer, resolve_local_model, tokenizer_file
from retrieval.errors import Cancelled, ExtractionFailed, LimitExceeded
from tests.conftest import write
from tests.filegen import (
    make_deep_docx,
    make_docx,
    make_docx_element_bomb,
    make_pdf,
    make_slow_pdf,
)


@pytest.fixture
def pool() -> Iterator[ParserPool]:
    """Two parser processes with a 2-second CPU budget and a 512 MB cap."""
    pool = ParserPool(2, ParseBudget(cpu_seconds=2, memory_mb=512))
    yield pool
    pool.close()


@pytest.fixture
def roomy_pool() -> Iterator[ParserPool]:
    """One parser process with CPU to spare and a 512 MB cap: for limits other than CPU.

    Counting a DOCX's 2M elements alone takes about 2 s of CPU here, so the
    2-second budget above would race the limit under test.
    """
    pool = ParserPool(1, ParseBudget(cpu_seconds=120, memory_mb=512))
    yield pool
    pool.close()


def parse(pool: ParserPool, path: Path, limits: Limits | None = None) -> str:
    return "".join(s.text for s in pool.parse(path, path.name, limits or Limits()))


def test_a_file_parses_in_a_worker(pool: ParserPool, tmp_path: Path) -> None:
    assert parse(pool, write(tmp_path / "a.txt", "Whales sing.")) == "Whales sing."


def test_a_pathological_pdf_is_stopped_by_its_cpu_budget(
    pool: ParserPool, tmp_path: Path
) -> None:
    slow = make_slow_pdf(tmp_path / "slow.pdf", pages=500, operations=300_000)
    assert slow.stat().st_size < 200_000  # hours of pypdf work in a few kilobytes
    start = time.monotonic()
    with pytest.raises(LimitExceeded, match="more than 2 s of CPU time.*KB_PARSE_CPU_SECONDS"):
        parse(pool, slow)
    assert time.monotonic() - start < 15
    # The pool replaced the killed worker and goes on.
    assert parse(pool, write(tmp_path / "b.txt", "still here")) == "still here"


def test_a_docx_element_bomb_fails_on_its_element_count(
    roomy_pool: ParserPool, tmp_path: Path
) -> None:
    bomb = make_docx_element_bomb(tmp_path / "bomb.docx", 3_000_000)
    assert bomb.stat().st_size < 200_000
    with pytest.raises(LimitExceeded, match="more than 2,000,000 XML elements"):
        parse(roomy_pool, bomb)


def test_memory_cap_stops_a_parser_that_builds_too_much(
    roomy_pool: ParserPool, tmp_path: Path
) -> None:
    """With the element guard raised, python-docx would build GBs: the cap stops it."""
    bomb = make_docx_element_bomb(tmp_path / "bomb.docx", 3_000_000)
    with pytest.raises(LimitExceeded, match="more than 512 MB of memory.*KB_PARSE_MEMORY_MB"):
        parse(roomy_pool, bomb, Limits(max_docx_elements=10**9))


def test_deeply_nested_docx_fails_on_depth(pool: ParserPool, tmp_path: Path) -> None:
    with pytest.raises(LimitExceeded, match="more than 100 deep"):
        parse(pool, make_deep_docx(tmp_path / "deep.docx", 300))


def test_cancel_stops_the_worker_at_once(tmp_path: Path) -> None:
    pool = ParserPool(1, ParseBudget(cpu_seconds=120))
    slow = make_slow_pdf(tmp_path / "slow.pdf", pages=500, operations=300_000)
    cancel = threading.Event()
    threading.Timer(1.0, cancel.set).start()
    start = time.monotonic()
    with pytest.raises(Cancelled):
        list(pool.parse(slow, slow.name, Limits(), cancel.is_set))
    assert time.monotonic() - start < 5
    assert parse(pool, write(tmp_path / "b.txt", "next")) == "next"
    pool.close()


def test_a_worker_that_dies_fails_only_its_file(pool: ParserPool, tmp_path: Path) -> None:
    slow = make_slow_pdf(tmp_path / "slow.pdf", pages=50, operations=300_000)
    before = set(_children(os.getpid()))
    segments = pool.parse(slow, slow.name, Limits())
    errors: list[Exception] = []

    def consume() -> None:
        try:
            list(segments)
        except Exception as exc:
            errors.append(exc)

    reader = threading.Thread(target=consume)
    reader.start()
    time.sleep(1.0)
    started = [c for c in set(_children(os.getpid())) - before if _reading(c, slow)]
    assert len(started) == 1
    for child in started:
        os.kill(child, signal.SIGSEGV)  # what a crashing native parser does
    reader.join(10)
    assert len(errors) == 1 and isinstance(errors[0], ExtractionFailed)
    assert "stopped unexpectedly" in str(errors[0])
    assert parse(pool, write(tmp_path / "b.txt", "next")) == "next"


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    found: list[int] = []
    for task in tasks.iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _reading(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has ``path`` open."""
    try:
        return any(os.readlink(fd) == str(path) for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


def test_a_worker_chunks_exactly_as_the_service_would(pool: ParserPool, tmp_path: Path) -> None:
    """With a plan the child chunks: same cuts, offsets, pages, sections and title."""
    plan = ChunkPlan(ChunkSettings(tokens=40, overlap=8),
                     tokenizer_file(resolve_local_model(None)))
    prose = " ".join(f"Harbour crane {i} lifts containers onto ships at dawn." for i in range(40))
    files = [
        write(tmp_path / "notes.txt", f"Harbour report\n\n{prose}"),
        make_pdf(tmp_path / "report.pdf", [f"Harbour report\n\n{prose}", prose[:900]]),
        make_docx(tmp_path / "report.docx", [("h1", "Harbour report"), ("p", prose)]),
    ]
    chunker = Chunker(plan.settings, fast_tokenizer(plan.tokenizer))
    for path in files:
        chunked = pool.chunks(path, path.name, Limits(), plan)
        here = chunker.chunks(pool.parse(path, path.name, Limits()), document_id="",
                              source=path.name, generation=0)
        got, expected = list(chunked), list(here)
        assert len(expected) > 3 and got == expected
        assert got[0].title == "Harbour report"
