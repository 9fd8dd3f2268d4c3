"""The ingest pipeline against the real model and real embedded Chroma."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.service import KnowledgeBase
from ingest import pipeline
from ingest.catalog import Catalog
from ingest.commit import CatalogCommitter
from ingest.loaders import Limits
from ingest.pipeline import Outcome, Source
from ingest.workers import Cancel, ChunkPlan, ParseBudget, Parser, ParserPool, never
from retrieval.embedders import Embedder, Queued
from retrieval.errors import ExtractionFailed
from retrieval.stores.hybrid import HybridStore
from retrieval.types import Chunk, Segment
from tests.conftest import MakeKb, write
from tests.filegen import (
    make_docx,
    make_encrypted_pdf,
    make_mixed_pdf,
    make_pdf,
    make_scanned_pdf,
)

PARIS = "The Eiffel Tower in Paris was completed in 1889 for the World's Fair. " * 3
OCEAN = "Blue whales are the largest animals known to have lived, reaching thirty metres. " * 3


def src(path: Path, key: str | None = None) -> Source:
    """A CLI-style source for a file."""
    return Source(key or f"file:{path}", path.name, path)


def assert_consistent(kb: KnowledgeBase) -> None:
    """Catalog, store and lexical leg agree: exactly the indexed generations (on Milvus
    both legs are one row; on the Chroma path the tantivy index is checked too)."""
    expected = {(d.id, d.generation): d.chunks for d in kb.catalog.documents("indexed")}
    assert dict(kb.store.inventory()) == expected
    if isinstance(kb.store, HybridStore):
        assert dict(kb.store.lexical.inventory()) == expected
        # Every record in Chroma is a listed chunk or one of its further dense pieces.
        chunk_ids = {c.id for page in kb.store.chunks() for c in page}
        records = kb.store.vectors._collection.get(include=[])["ids"]
        assert {i.partition("/")[0] for i in records} == chunk_ids
    assert kb.store.lexical_count() == sum(expected.values())
    assert kb.catalog.pending() == []


def test_ingest_then_search_finds_the_right_file(make_kb: MakeKb, tmp_path: Path) -> None:
    kb = make_kb()
    a, b = write(tmp_path / "paris.txt", PARIS), write(tmp_path / "ocean.md", OCEAN)
    outcomes = kb.ingest([src(a), src(b)])
    assert [o.status for o in outcomes] == ["added", "added"]
    hits = kb.search("largest animal in the sea", 3)
    assert hits[0].source == "ocean.md"
    assert hits[0].score > hits[-1].score or len(hits) == 1
    assert_consistent(kb)


def test_reingest_identical_content_is_a_no_op(make_kb: MakeKb, tmp_path: Path) -> None:
    kb = make_kb()
    a = write(tmp_path / "paris.txt", PARIS)
    first = kb.ingest([src(a)])[0]
    before = kb.store.inventory()
    again = kb.ingest([src(a)])[0]
    assert again.status == "unchanged" and again.chunks == first.chunks
    assert kb.store.inventory() == before


def test_changed_content_replaces_chunks_with_nothing_stale(
    make_kb: MakeKb, tmp_path: Path
) -> None:
    kb = make_kb()
    a = write(tmp_path / "notes.txt", PARIS)
    kb.ingest([src(a)])
    write(a, OCEAN)
    assert kb.ingest([src(a)])[0].status == "updated"
    assert_consistent(kb)
    texts = [h.text for h in kb.search("Eiffel Tower Paris", 10)]
    assert texts and all("Eiffel" not in t for t in texts)
    assert len(kb.catalog.documents()) == 1


def test_the_same_file_under_two_keys_is_found_once(make_kb: MakeKb, tmp_path: Path) -> None:
    kb = make_kb()
    path = write(tmp_path / "ocean.txt", OCEAN)
    kb.ingest([src(path, "owui:1"), src(path, "owui:2")])
    assert kb.catalog.counts()["documents_indexed"] == 2
    hits = kb.search("largest animal", 5)
    assert len({h.text for h in hits}) == len(hits) >= 1


def test_remove_deletes_every_vector(make_kb: MakeKb, tmp_path: Path) -> None:
    kb = make_kb()
    kb.ingest([src(write(tmp_path / "paris.txt", PARIS)), src(write(tmp_path / "o.txt", OCEAN))])
    removed = kb.remove("paris.txt")
    assert [d.source for d in removed] == ["paris.txt"]
    assert_consistent(kb)
    assert {h.source for h in kb.search("Eiffel Tower", 10)} == {"o.txt"}


def test_bad_files_fail_alone_with_reasons(make_kb: MakeKb, tmp_path: Path) -> None:
    kb = make_kb()
    good = write(tmp_path / "good.txt", PARIS)
    bad = [
        make_encrypted_pdf(tmp_path / "locked.pdf"),
        make_scanned_pdf(tmp_path / "scan.pdf"),
        write(tmp_path / "empty.txt", ""),
        write(tmp_path / "fake.pdf", "just text, not a PDF"),
        write(tmp_path / "photo.png", "png?"),
    ]
    outcomes = {o.source: o for o in kb.ingest([src(p) for p in [*bad, good]])}
    assert outcomes["good.txt"].status == "added"
    reasons = {name: (o.error or "") for name, o in outcomes.items() if o.status == "failed"}
    assert "encrypted" in reasons["locked.pdf"]
    assert "no extractable text" in reasons["scan.pdf"]
    assert "empty" in reasons["empty.txt"]
    assert "unsupported type" in reasons["fake.pdf"]
    assert "unsupported type" in reasons["photo.png"]
    failed = {d.source: d for d in kb.catalog.documents("failed")}
    assert failed["locked.pdf"].error == reasons["locked.pdf"]
    assert_consistent(kb)


def test_every_failure_is_in_the_catalog_with_its_latest_reason(
    make_kb: MakeKb, tmp_path: Path
) -> None:
    kb = make_kb(limits=Limits(max_file_bytes=100))
    big = write(tmp_path / "big.txt", "word " * 100)
    odd = write(tmp_path / "data.csv", "a,b\n1,2\n")
    kb.ingest([src(big), src(odd)])
    failed = {d.source: d.error or "" for d in kb.catalog.documents("failed")}
    assert "over the limit" in failed["big.txt"] and "unsupported type" in failed["data.csv"]
    write(big, "")
    kb.ingest([src(big)])
    assert "empty" in (kb.catalog.find("big.txt")[0].error or "")
    write(big, PARIS[:90])
    assert kb.ingest([src(big)])[0].status == "added"
    assert kb.catalog.find("big.txt")[0].status == "indexed"
    assert_consistent(kb)


def test_failed_update_keeps_the_indexed_version(make_kb: MakeKb, tmp_path: Path) -> None:
    kb = make_kb()
    path = tmp_path / "report.pdf"
    make_pdf(path, ["Quarterly revenue grew by twelve percent in the northern region."])
    kb.ingest([src(path)])
    make_encrypted_pdf(path)
    outcome = kb.ingest([src(path)])[0]
    assert outcome.status == "failed" and "encrypted" in (outcome.error or "")
    assert kb.search("quarterly revenue", 1)[0].source == "report.pdf"
    assert kb.catalog.documents()[0].status == "indexed"
    assert_consistent(kb)


def test_pdf_pages_and_docx_sections_reach_the_chunks(make_kb: MakeKb, tmp_path: Path) -> None:
    kb = make_kb()
    pdf = make_pdf(
        tmp_path / "manual.pdf",
        ["Introduction text.", "The zebra crossing rule.", "Closing remarks."],
    )
    doc = make_docx(
        tmp_path / "policy.docx",
        [("h1", "Travel policy"), ("p", "Employees book trains for trips under 500 km.")],
    )
    kb.ingest([src(pdf), src(doc)])
    zebra = kb.search("zebra crossing", 1)[0]
    assert (zebra.source, zebra.page) == ("manual.pdf", 2)
    train = kb.search("book trains for short trips", 1)[0]
    assert (train.source, train.section) == ("policy.docx", "Travel policy")


class Wrapping(Embedder):
    """The real embedder behind a wrapper that sees each ``embed`` call."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name, self.dimension, self.max_tokens = inner.name, inner.dimension, inner.max_tokens
        self.runtime = inner.runtime

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed(texts)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


class InterruptAfter(Wrapping):
    """Wraps the real embedder and raises KeyboardInterrupt on the n-th call (Ctrl-C)."""

    def __init__(self, inner: Embedder, calls: int) -> None:
        super().__init__(inner)
        self.left = calls

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.left -= 1
        if self.left < 0:
            raise KeyboardInterrupt
        return self.inner.embed(texts)


def test_ctrl_c_mid_ingest_leaves_catalog_and_store_in_agreement(
    make_kb: MakeKb, embedder: Embedder, tmp_path: Path
) -> None:
    files = [write(tmp_path / f"d{i}.txt", f"Document {i}. " + PARIS) for i in range(12)]
    kb = make_kb(use=InterruptAfter(embedder, calls=2), batch_size=4)
    with pytest.raises(KeyboardInterrupt):
        kb.ingest([src(p) for p in files])
    indexed = kb.catalog.documents("indexed")
    assert 0 < len(indexed) < len(files)
    assert_consistent(kb)
    kb.close()
    kb = make_kb(batch_size=4)
    outcomes = kb.ingest([src(p) for p in files])
    assert sorted(o.status for o in outcomes).count("unchanged") == len(indexed)
    assert len(kb.catalog.documents("indexed")) == len(files)
    assert_consistent(kb)


class NotingNextBatch(Wrapping):
    """Wraps the real embedder; notes when a second batch's embedding starts."""

    def __init__(self, inner: Embedder) -> None:
        super().__init__(inner)
        self.calls, self.second = 0, threading.Event()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        if self.calls == 2:
            self.second.set()
        return self.inner.embed(texts)


def test_the_next_batch_is_embedded_while_a_batch_is_written(
    make_kb: MakeKb, embedder: Embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedder never waits for a write: the first batch's write starts only once
    the second batch is being embedded (the write waits for that, or gives up)."""
    monkeypatch.setattr(pipeline, "POLL_SECONDS", 30)  # no flush of part of a batch at a pause
    noting = NotingNextBatch(embedder)
    kb = make_kb(use=noting, batch_size=4)
    files = [write(tmp_path / f"d{i}.txt", f"Document {i}. " + PARIS) for i in range(12)]
    overlapped: list[bool] = []
    add = kb.store.add

    def add_once_the_next_batch_embeds(chunks: Sequence[Chunk], vectors: Any) -> None:
        if not overlapped:
            overlapped.append(noting.second.wait(timeout=30))
        add(chunks, vectors)

    monkeypatch.setattr(kb.store, "add", add_once_the_next_batch_embeds)
    outcomes = kb.ingest([src(p) for p in files])
    assert [o.status for o in outcomes] == ["added"] * len(files)
    assert overlapped == [True]
    assert_consistent(kb)


def test_an_idle_embedder_is_sent_a_batch_before_it_is_full(
    make_kb: MakeKb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the start of a run (and whenever the parsers fall behind) the embedder would
    wait for a whole batch to be parsed: it gets ``EAGER_CHUNKS`` instead."""
    monkeypatch.setattr(pipeline, "POLL_SECONDS", 30)  # no flush of part of a batch at a pause
    monkeypatch.setattr(pipeline, "EAGER_CHUNKS", 4)
    kb = make_kb(batch_size=64)
    files = [write(tmp_path / f"d{i}.txt", f"Document {i}. " + PARIS) for i in range(12)]
    written: list[int] = []
    add = kb.store.add

    def noting_add(chunks: Sequence[Chunk], vectors: Any) -> None:
        written.append(len(chunks))
        add(chunks, vectors)

    monkeypatch.setattr(kb.store, "add", noting_add)
    outcomes = kb.ingest([src(p) for p in files])
    assert [o.status for o in outcomes] == ["added"] * len(files)
    assert written[0] == 4 and sum(written) == kb.catalog.counts()["chunks"] > 4
    assert_consistent(kb)


def queue_and_writes(kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch, log: list[str],
                     interrupt_write: bool = False) -> None:
    """Note in ``log`` each batch queued with the embedder, each write, and each queued
    batch cancelled; the first write raises Ctrl-C when ``interrupt_write``."""
    queue, add = kb.embedder.queue_documents, kb.store.add

    def noting_queue(texts: Sequence[str]) -> Queued:
        queued = queue(texts)
        number = sum(e.startswith("queued") for e in log) + 1
        log.append(f"queued {number}")

        def cancel() -> None:
            log.append(f"cancelled {number}")
            queued.cancel()

        return Queued(queued.wait, cancel)

    def noting_add(chunks: Sequence[Chunk], vectors: Any) -> None:
        log.append("written")
        if interrupt_write:
            raise KeyboardInterrupt
        add(chunks, vectors)

    monkeypatch.setattr(kb.embedder, "queue_documents", noting_queue)
    monkeypatch.setattr(kb.store, "add", noting_add)
    monkeypatch.setattr(pipeline, "POLL_SECONDS", 30)  # batches are full ones
    monkeypatch.setattr(pipeline, "EAGER_CHUNKS", 10**6)


def test_a_batch_is_queued_with_the_embedder_before_the_one_before_it_is_written(
    make_kb: MakeKb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queued only once a thread was free to wait for it, the next batch waited for the
    GIL that the writer held through Chroma's upsert, and the embedder idled."""
    kb = make_kb(batch_size=8)
    files = [write(tmp_path / f"d{i}.txt", f"Document {i}. " + PARIS) for i in range(30)]
    log: list[str] = []
    queue_and_writes(kb, monkeypatch, log)
    outcomes = kb.ingest([src(p) for p in files])
    assert [o.status for o in outcomes] == ["added"] * len(files)
    writes = [i for i, event in enumerate(log) if event == "written"]
    assert len(writes) >= 3
    for number, at in enumerate(writes[:-1], 1):  # the next batch is queued before
        assert f"queued {number + 1}" in log[:at], log
    assert_consistent(kb)


def test_ctrl_c_while_writing_drops_the_batch_queued_behind(
    make_kb: MakeKb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kb = make_kb(batch_size=8)
    files = [write(tmp_path / f"d{i}.txt", f"Document {i}. " + PARIS) for i in range(12)]
    log: list[str] = []
    queue_and_writes(kb, monkeypatch, log, interrupt_write=True)
    with pytest.raises(KeyboardInterrupt):
        kb.ingest([src(p) for p in files])
    assert log[:3] == ["queued 1", "queued 2", "written"] and "cancelled 2" in log, log
    assert kb.catalog.counts()["chunks"] == 0


class InterruptAfterBegin:
    """A catalog connection where Ctrl-C lands once, just after a transaction began."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db, self.armed = db, True

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        cursor = self.db.execute(sql, *args)
        if self.armed and sql == "BEGIN IMMEDIATE":
            self.armed = False
            raise KeyboardInterrupt
        return cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


def test_a_ctrl_c_just_after_a_catalog_transaction_began_does_not_block_the_rollback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "catalog.sqlite3"
    catalog = Catalog(path)
    catalog.intend("a", 1)
    monkeypatch.setattr(catalog, "_db", InterruptAfterBegin(catalog._db))
    with pytest.raises(KeyboardInterrupt):
        catalog.intend("b", 1)
    catalog.done("a", 1)  # the rollback after Ctrl-C: it must reach the disk
    catalog.intend("c", 1)
    with closing(sqlite3.connect(path)) as other:
        assert other.execute("SELECT document_id FROM pending").fetchall() == [("c",)]
    catalog.close()


def test_a_rollback_keeps_a_document_committed_just_before_ctrl_c(
    make_kb: MakeKb, tmp_path: Path
) -> None:
    kb = make_kb()
    kb.ingest([src(write(tmp_path / "paris.txt", PARIS))])
    (doc,) = kb.catalog.documents("indexed")
    CatalogCommitter(kb.catalog, kb.store).abort(doc)  # Ctrl-C before the pipeline saw the commit
    assert kb.search("Eiffel Tower", 1)[0].source == "paris.txt"
    assert_consistent(kb)


def test_identical_content_under_a_new_key_reuses_the_vectors(
    make_kb: MakeKb, embedder: Embedder, tmp_path: Path
) -> None:
    counting = InterruptAfter(embedder, calls=1000)  # counts embedding calls
    kb = make_kb(use=counting, batch_size=4)
    text = " ".join(f"Sentence {i} is about ocean tides and currents." for i in range(300))
    path = write(tmp_path / "tides.txt", text)
    [first] = kb.ingest([Source("owui:1", "tides.txt", path, owner="alice")])
    assert first.chunks > 4
    calls = counting.left
    [copy] = kb.ingest([Source("owui:2", "tides-copy.txt", path, owner="alice")])
    assert counting.left == calls  # nothing embedded again
    assert (copy.status, copy.chunks) == ("added", first.chunks)
    assert_consistent(kb)
    kb.remove("tides.txt")  # the copy owns its vectors
    assert {h.source for h in kb.search("ocean tides", 3, viewer="alice")} == {"tides-copy.txt"}
    assert_consistent(kb)


def test_a_copied_scan_keeps_its_page_counts(make_kb: MakeKb, tmp_path: Path) -> None:
    kb = make_kb()
    path = make_mixed_pdf(tmp_path / "scan.pdf", [("scan", "Harbour lighthouse budget."),
                                                   ("scan", None), ("text", "Signed.")])
    [first] = kb.ingest([Source("owui:1", "scan.pdf", path, owner="alice")])
    [copy] = kb.ingest([Source("owui:2", "scan-copy.pdf", path, owner="alice")])
    assert (first.status, copy.status) == ("added", "added")
    for doc_id in (first.document_id, copy.document_id):
        doc = kb.catalog.get(doc_id)
        assert doc is not None and (doc.pages, doc.ocr_pages, doc.blank_pages) == (3, 2, 1)
    [hit] = kb.search("lighthouse budget", 1, viewer="alice")
    assert hit.ocr and hit.page == 1


def test_vectors_are_never_reused_across_owners(
    make_kb: MakeKb, embedder: Embedder, tmp_path: Path
) -> None:
    """Reusing alice's vectors for bob's identical upload would tell bob she holds that file."""
    counting = InterruptAfter(embedder, calls=1000)
    kb = make_kb(use=counting, batch_size=4)
    text = " ".join(f"Sentence {i} is about ocean tides and currents." for i in range(300))
    path = write(tmp_path / "tides.txt", text)
    [first] = kb.ingest([Source("owui:1", "tides.txt", path, owner="alice")])
    calls = counting.left
    [copy] = kb.ingest([Source("owui:2", "tides-copy.txt", path, owner="bob")])
    assert counting.left < calls  # bob's copy was embedded on its own
    assert (copy.status, copy.chunks) == ("added", first.chunks)
    assert {h.source for h in kb.search("ocean tides", 3, viewer="bob")} == {"tides-copy.txt"}
    assert {h.source for h in kb.search("ocean tides", 3, viewer="alice")} == {"tides.txt"}
    assert_consistent(kb)


def test_recovery_removes_vectors_a_killed_process_left(
    make_kb: MakeKb, embedder: Embedder, tmp_path: Path
) -> None:
    kb = make_kb()
    kb.ingest([src(write(tmp_path / "a.txt", PARIS))])
    # Simulate a process killed between writing vectors and committing them.
    doc = kb.catalog.documents()[0]
    kb.catalog.intend("orphan", 1)
    stray = Chunk("orphan", "orphan.txt", 0, "stray text", 0, 10, generation=1)
    kb.store.add([stray], embedder.embed_documents([stray.text]))
    assert kb.store.inventory()[("orphan", 1)] == 1
    kb.close()
    kb = make_kb()
    assert_consistent(kb)
    assert [d.id for d in kb.catalog.documents()] == [doc.id]


def test_data_dir_is_locked_against_a_second_process(make_kb: MakeKb) -> None:
    from retrieval.errors import DataDirBusy

    make_kb()
    with pytest.raises(DataDirBusy, match="in use by another kb process"):
        make_kb()


def test_reindex_switches_collection_and_keeps_results(make_kb: MakeKb, tmp_path: Path) -> None:
    kb = make_kb()
    kb.ingest([src(write(tmp_path / "paris.txt", PARIS)), src(write(tmp_path / "o.txt", OCEAN))])
    old = kb.store.name
    outcomes = kb.reindex()
    assert len(outcomes) == 2 and kb.store.name != old
    assert old not in kb.backend.names()
    assert kb.search("whales", 1)[0].source == "o.txt"
    assert_consistent(kb)


def test_failed_reindex_changes_nothing(make_kb: MakeKb, tmp_path: Path) -> None:
    kb = make_kb()
    kb.ingest([src(write(tmp_path / "paris.txt", PARIS))])
    old, before = kb.store.name, kb.store.inventory()
    collections = set(kb.backend.names())  # a Chroma server may hold other tests' too
    kb.originals.discard(kb.catalog.documents()[0].content_hash)  # the original went missing
    with pytest.raises(Exception, match="re-index stopped"):
        kb.reindex()
    assert kb.store.name == old and set(kb.backend.names()) == collections
    assert kb.store.inventory() == before
    assert kb.search("Eiffel", 1)[0].source == "paris.txt"


class SmallerModel(Embedder):
    """A different embedding model (real vectors cut to 128 dims), as after a model change."""

    def __init__(self, inner: Embedder) -> None:
        self.inner, self.name, self.dimension = inner, "other-model", 128
        self.max_tokens = inner.max_tokens

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        cut = self.inner.embed(texts)[:, :128]
        return cut / np.linalg.norm(cut, axis=1, keepdims=True)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


def test_model_change_is_refused_until_reindex(
    make_kb: MakeKb, embedder: Embedder, tmp_path: Path
) -> None:
    from retrieval.errors import ConfigurationError

    kb = make_kb()
    kb.ingest([src(write(tmp_path / "o.txt", OCEAN)), src(write(tmp_path / "p.txt", PARIS))])
    kb.close()
    kb = make_kb(use=SmallerModel(embedder))
    with pytest.raises(ConfigurationError, match="run `kb reindex`"):
        kb.search("whales", 1)
    with pytest.raises(ConfigurationError, match="other-model:128"):
        kb.ingest([src(write(tmp_path / "n.txt", "new"))])
    kb.reindex()
    assert kb.search("largest animal whales", 1)[0].source == "o.txt"
    assert kb.status()["dimension"] == 128
    assert_consistent(kb)


def test_a_file_refused_by_type_is_not_stored_and_removes_cleanly(
    make_kb: MakeKb, tmp_path: Path
) -> None:
    from tests.filegen import png_bytes

    kb = make_kb()
    fake = tmp_path / "scan.pdf"
    fake.write_bytes(png_bytes())
    [outcome] = kb.ingest([src(fake)])
    assert outcome.status == "failed" and "PNG" in (outcome.error or "")
    assert not [p for p in kb.originals.root.rglob("*") if p.is_file()]
    assert [d.source for d in kb.remove("scan.pdf")] == ["scan.pdf"]
    assert kb.originals.root.is_dir() and kb.catalog.documents() == []


class CountingParser:
    """The real pool, counting the files it parses."""

    def __init__(self, pool: Parser) -> None:
        self.pool, self.calls, self.size = pool, 0, pool.size

    def parse(self, path: Path, name: str, limits: Limits, cancelled: Cancel = never
              ) -> Iterator[Segment]:
        self.calls += 1
        return self.pool.parse(path, name, limits, cancelled)

    def chunks(self, path: Path, name: str, limits: Limits, plan: ChunkPlan,
               cancelled: Cancel = never) -> Iterator[Chunk]:
        self.calls += 1
        return self.pool.chunks(path, name, limits, plan, cancelled)

    def close(self) -> None:
        """The pool is shared: left open."""


def test_an_upload_is_parsed_once_for_its_chunks_and_its_text(
    make_kb: MakeKb, parser_pool: ParserPool, tmp_path: Path
) -> None:
    counting = CountingParser(parser_pool)
    kb = make_kb(parser=counting)
    path = write(tmp_path / "p.txt", PARIS)
    outcome, text = kb.upload(Source("owui:1", "p.txt", path))
    assert outcome.status == "added" and counting.calls == 1
    assert text is not None and text.strip() == PARIS.strip()
    again, text = kb.upload(Source("owui:1", "p.txt", path))  # unchanged: parsed for its text
    assert again.status == "unchanged" and counting.calls == 2
    assert text is not None and text.strip() == PARIS.strip()


class MeetingParser(CountingParser):
    """The real pool; the first file's parse (and chunking, in the worker) waits until
    a second one has started."""

    def __init__(self, pool: Parser) -> None:
        super().__init__(pool)
        self.second_started = threading.Event()

    def chunks(self, path: Path, name: str, limits: Limits, plan: ChunkPlan,
               cancelled: Cancel = never) -> Iterator[Chunk]:
        self.calls += 1
        if self.calls == 2:
            self.second_started.set()
        return self._chunks(self.calls, path, name, limits, plan, cancelled)

    def _chunks(self, call: int, path: Path, name: str, limits: Limits, plan: ChunkPlan,
                cancelled: Cancel) -> Iterator[Chunk]:
        if call == 1:
            assert self.second_started.wait(timeout=20), "the next file was not parsed ahead"
        yield from self.pool.chunks(path, name, limits, plan, cancelled)


@pytest.fixture
def three_workers() -> Iterator[ParserPool]:
    """A pool of three: one run may use two of them (the last is kept for others)."""
    pool = ParserPool(3, ParseBudget(cpu_seconds=60, memory_mb=3072))
    yield pool
    pool.close()


def test_one_run_parses_files_at_once_on_all_workers_but_one(
    make_kb: MakeKb, three_workers: ParserPool, tmp_path: Path
) -> None:
    meeting = MeetingParser(three_workers)
    kb = make_kb(parser=meeting, batch_size=4)
    files = [write(tmp_path / f"d{i}.txt", f"Document {i}. " + PARIS) for i in range(6)]
    files.insert(3, write(tmp_path / "empty.txt", ""))
    outcomes = kb.ingest([src(p) for p in files])
    status = {o.source: o.status for o in outcomes}
    assert status == {p.name: "failed" if p.name == "empty.txt" else "added" for p in files}
    assert meeting.calls == len(files)
    assert_consistent(kb)


def test_large_files_behind_small_ones_with_tiny_buffers_never_deadlock(
    make_kb: MakeKb, three_workers: ParserPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files over the read-ahead size hold a worker while their buffer is full; the
    ones before them must still get through (a run uses two of three workers, and a
    second run goes alongside)."""
    monkeypatch.setattr(pipeline, "AHEAD_BYTES", 2_000)
    monkeypatch.setattr(pipeline, "QUEUE_DEPTH", 2)
    long = " ".join(f"Sentence {i} is about harbour cranes and tides." for i in range(400))
    files = [write(tmp_path / f"f{i}.txt", long if i % 3 else f"Short note {i}.")
             for i in range(9)]
    kb = make_kb(parser=three_workers, batch_size=4)
    results: dict[str, list[Outcome]] = {}

    def ingest(name: str, paths: list[Path]) -> None:
        results[name] = kb.ingest([src(p) for p in paths])

    runs = [threading.Thread(target=ingest, args=("a", files[:6])),
            threading.Thread(target=ingest, args=("b", files[6:]))]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=120)
    assert not any(run.is_alive() for run in runs), "ingest deadlocked"
    outcomes = results["a"] + results["b"]
    assert sorted(o.status for o in outcomes) == ["added"] * 9
    assert sum(o.chunks for o in outcomes) > 6 * 10  # the long files made many chunks
    assert_consistent(kb)


class BreaksAtTheEnd(CountingParser):
    """The real pool; ``bad.txt`` raises after all its chunks, as a file damaged at its end."""

    def chunks(self, path: Path, name: str, limits: Limits, plan: ChunkPlan,
               cancelled: Cancel = never) -> Iterator[Chunk]:
        chunked = self.pool.chunks(path, name, limits, plan, cancelled)
        return self._broken(chunked) if name == "bad.txt" else chunked

    def _broken(self, chunks: Iterator[Chunk]) -> Iterator[Chunk]:
        yield from chunks
        raise ExtractionFailed("the file is damaged at its end")


def test_a_file_failing_after_its_chunks_were_sent_to_embed_leaves_none_behind(
    make_kb: MakeKb, parser_pool: ParserPool, tmp_path: Path
) -> None:
    """A batch is embedded while the one before it is written: a file that fails while
    its chunks are in flight is written, then removed; the others are committed."""
    kb = make_kb(parser=BreaksAtTheEnd(parser_pool), batch_size=4)
    long = " ".join(f"Sentence {i} is about harbour cranes and tides." for i in range(120))
    files = [write(tmp_path / "good1.txt", PARIS), write(tmp_path / "bad.txt", long),
             write(tmp_path / "good2.txt", OCEAN)]
    outcomes = {o.source: o for o in kb.ingest([src(p) for p in files])}
    assert {n: o.status for n, o in outcomes.items()} == {
        "good1.txt": "added", "bad.txt": "failed", "good2.txt": "added"}
    assert outcomes["bad.txt"].error == "the file is damaged at its end"
    assert_consistent(kb)
    assert {h.source for h in kb.search("harbour cranes and tides", 5)} <= {"good1.txt",
                                                                          "good2.txt"}
