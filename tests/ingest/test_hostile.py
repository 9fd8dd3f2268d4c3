"""Hostile input: every bad file fails alone, with its reason, within its budget, while
another user's upload and searches go on."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ingest.loaders import Limits
from ingest.pipeline import Outcome, Source
from ingest.workers import ParseBudget, ParserPool
from tests.conftest import MakeKb, embedded_only, write
from tests.filegen import (
    make_deep_docx,
    make_docx_element_bomb,
    make_slow_pdf,
    make_zip_bomb,
    png_bytes,
)
from tests.ingest.test_pipeline import assert_consistent

CPU_SECONDS = 3


def _bytes(data: bytes) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        path.write_bytes(data)
        return path

    return make


# name -> (how to make it, what its failure says)
HOSTILE: dict[str, tuple[Callable[[Path], Path], str]] = {
    "slow.pdf": (lambda p: make_slow_pdf(p, pages=1000, operations=300_000), "CPU time"),
    "element-bomb.docx": (lambda p: make_docx_element_bomb(p, 3_000_000), "XML elements"),
    "deep.docx": (lambda p: make_deep_docx(p, 500), "deep"),
    "zip-bomb.docx": (lambda p: make_zip_bomb(p, 80 * 2**20), "zip bomb"),
    "random.txt": (_bytes(os.urandom(64 * 1024)), "binary data"),
    "image.pdf": (_bytes(png_bytes()), "PNG image"),
    "truncated.pdf": (_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog"), "PDF"),
    "empty.docx": (_bytes(b""), "empty file"),
    "nul-bytes.txt": (_bytes(b"\x00" * 10_000), "binary data"),
    "pixel-bomb.png": (_bytes(png_bytes(100_000, 100_000, rows=1)), "pixels, over the limit"),
    "broken.jpg": (_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + os.urandom(4096)), "damaged image"),
    "cut.jpg": (_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01"), "damaged image"),
}


@pytest.fixture
def strict_pool() -> Iterator[ParserPool]:
    pool = ParserPool(2, ParseBudget(cpu_seconds=CPU_SECONDS, memory_mb=1024))
    yield pool
    pool.close()


@embedded_only  # parsing, not storage
def test_hostile_files_fail_alone_while_others_upload_and_search(
    make_kb: MakeKb, strict_pool: ParserPool, tmp_path: Path
) -> None:
    kb = make_kb(parser=strict_pool, limits=Limits(max_docx_uncompressed_bytes=64 * 2**20))
    kb.ingest([Source("file:base", "base.txt", write(tmp_path / "base.txt", "Whales sing."))])
    bad = [make(tmp_path / name) for name, (make, _) in HOSTILE.items()]
    long_line = write(tmp_path / "one-line.txt", "tide " * 40_000)  # 200 KB, no newline
    finished: dict[str, float] = {}
    outcomes: dict[str, Outcome] = {}
    start = time.monotonic()

    def report(outcome: Outcome) -> None:
        outcomes[outcome.source] = outcome
        finished[outcome.source] = time.monotonic() - start

    hostile = threading.Thread(target=kb.ingest, args=(
        [Source(f"file:{p.name}", p.name, p) for p in [*bad, long_line]], report))
    hostile.start()
    time.sleep(0.5)  # the slow PDF is being parsed now
    other = write(tmp_path / "other.txt", "Dolphins click and whistle to each other.")
    [small] = kb.ingest([Source("owui:b", "other.txt", other, owner="bob")], report)
    small_done = time.monotonic() - start
    searches = [kb.search("whales", 3) for _ in range(5)]
    hostile.join(120)
    assert not hostile.is_alive()

    assert small.status == "added"
    assert small_done < finished["slow.pdf"], "another user's upload waited for the slow PDF"
    assert all(r and r[0].source == "base.txt" for r in searches)
    for name, (_, reason) in HOSTILE.items():
        assert outcomes[name].status == "failed", name
        assert reason in (outcomes[name].error or ""), (name, outcomes[name].error)
    assert finished["slow.pdf"] < CPU_SECONDS * 4 + 10
    assert outcomes["one-line.txt"].status == "added" and outcomes["one-line.txt"].chunks > 10
    assert kb.search("dolphins whistle", 1, viewer="bob")[0].source == "other.txt"
    assert_consistent(kb)
