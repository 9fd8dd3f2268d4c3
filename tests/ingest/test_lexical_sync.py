"""The lexical leg follows the catalog exactly as the vectors do, through crashes and damage.

On the Chroma path it is a tantivy index of its own; on Milvus, the same rows.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retrieval.embedders import Embedder
from retrieval.stores import StoreBackend
from retrieval.stores.chroma import ChromaStore
from retrieval.types import Chunk
from tests.conftest import (
    TEST_PIECE_TOKENS,
    MakeKb,
    chroma_only,
    embedded_only,
    store_settings,
    write,
)
from tests.ingest.test_pipeline import OCEAN, PARIS, assert_consistent, src

KB = Path(sys.executable).with_name("kb")


def lexical_folder(kb_data: Path, name: str) -> Path:
    """Where the active collection's lexical index lives."""
    return kb_data / "lexical" / name


def test_add_replace_remove_keep_both_indexes_in_step(make_kb: MakeKb, tmp_path: Path) -> None:
    kb = make_kb()
    a = write(tmp_path / "a.txt", PARIS)
    kb.ingest([src(a), src(write(tmp_path / "o.txt", OCEAN))])
    assert_consistent(kb)
    write(a, "Completely new text about glaciers and ice sheets. " * 3)
    assert kb.ingest([src(a)])[0].status == "updated"
    assert_consistent(kb)
    assert [h.source for h in kb.search("glaciers ice", 1, mode="lexical")] == ["a.txt"]
    assert kb.search("Eiffel", 5, mode="lexical") == []  # the old generation is gone
    kb.remove("o.txt")
    assert_consistent(kb)
    assert kb.search("whales", 5, mode="lexical") == []


@chroma_only
def test_missing_lexical_index_is_rebuilt_at_start(make_kb: MakeKb, tmp_path: Path) -> None:
    kb = make_kb()
    kb.ingest([src(write(tmp_path / "a.txt", PARIS)), src(write(tmp_path / "o.txt", OCEAN))])
    name, data = kb.store.name, kb.data_dir
    kb.close()
    import shutil

    shutil.rmtree(lexical_folder(data, name))
    kb = make_kb()
    assert_consistent(kb)
    assert kb.search("Eiffel tower", 1, mode="lexical")[0].source == "a.txt"


@chroma_only
def test_a_start_in_step_reads_no_piece_ids(
    make_kb: MakeKb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counting Chroma's chunks reads every further piece's id (seconds at a million
    chunks): starting and ``status`` do without it while the indexes agree."""
    kb = make_kb()
    kb.ingest([src(write(tmp_path / "a.txt", PARIS)), src(write(tmp_path / "o.txt", OCEAN))])
    kb.close()

    def counted(self: ChromaStore) -> int:
        raise AssertionError("the vector store's chunks were counted")

    monkeypatch.setattr(ChromaStore, "count", counted)
    kb = make_kb()
    status = kb.status()
    assert status["vectors"] > status["lexical_chunks"] == status["chunks"] > 0  # pieces
    assert kb.search("Eiffel tower", 1)[0].source == "a.txt"


@chroma_only
def test_corrupt_lexical_index_is_rebuilt_at_start(make_kb: MakeKb, tmp_path: Path) -> None:
    kb = make_kb()
    kb.ingest([src(write(tmp_path / "o.txt", OCEAN))])
    name, data = kb.store.name, kb.data_dir
    kb.close()
    (lexical_folder(data, name) / "meta.json").write_text("garbage")
    kb = make_kb()
    assert_consistent(kb)
    assert kb.search("blue whales", 1, mode="lexical")[0].source == "o.txt"


@chroma_only
def test_crash_between_the_two_writes_is_recovered(
    make_kb: MakeKb, embedder: Embedder, tmp_path: Path
) -> None:
    kb = make_kb()
    kb.ingest([src(write(tmp_path / "a.txt", PARIS))])
    # Killed after the vectors were written but before the lexical commit, and the reverse.
    kb.catalog.intend("v-only", 1)
    stray = Chunk("v-only", "v.txt", 0, "stray vector text", 0, 17, generation=1)
    kb.store.vectors.add([stray], embedder.embed_documents([stray.text]))
    kb.catalog.intend("l-only", 1)
    kb.store.lexical.add([Chunk("l-only", "l.txt", 0, "stray lexical text", 0, 18)])
    kb.store.lexical.commit()
    kb.close()
    kb = make_kb()
    assert_consistent(kb)
    assert kb.search("stray text", 5, mode="lexical") == []


@chroma_only
def test_stale_lexical_index_without_an_intent_is_rebuilt(make_kb: MakeKb, tmp_path: Path) -> None:
    kb = make_kb()
    kb.ingest([src(write(tmp_path / "a.txt", PARIS))])
    kb.store.lexical.add([Chunk("ghost", "g.txt", 0, "ghost words", 0, 11)])  # no intent
    kb.store.lexical.commit()
    kb.close()
    kb = make_kb()
    assert_consistent(kb)


@chroma_only
def test_reindex_builds_a_new_lexical_index_and_drops_the_old(
    make_kb: MakeKb, tmp_path: Path
) -> None:
    kb = make_kb()
    kb.ingest([src(write(tmp_path / "o.txt", OCEAN))])
    old = kb.store.name
    kb.reindex()
    assert not lexical_folder(kb.data_dir, old).exists()
    assert lexical_folder(kb.data_dir, kb.store.name).is_dir()
    assert_consistent(kb)
    assert kb.search("whales", 1, mode="lexical")[0].source == "o.txt"


@embedded_only  # files on our disk
def test_a_dropped_collection_leaves_no_files(make_kb: MakeKb, tmp_path: Path) -> None:
    kb = make_kb()
    kb.ingest([src(write(tmp_path / f"o{i}.txt", OCEAN * 20 + str(i))) for i in range(30)])
    chroma = kb.data_dir / "chroma"

    def segment_folders() -> set[str]:
        return {p.name for p in chroma.iterdir() if p.is_dir()}

    before = segment_folders()
    assert before
    kb.reindex()
    kb.reindex()
    after = segment_folders()
    assert len(after) == len(before) and not after & before  # the old ones are gone
    assert_consistent(kb)


def test_kill_9_during_ingest_leaves_everything_consistent(
    make_kb: MakeKb, store_backend: StoreBackend, tmp_path: Path
) -> None:
    folder = tmp_path / "docs"
    for i in range(60):
        write(folder / f"d{i}.txt", f"Document {i} about topic {i % 7}. " + OCEAN)
    data = tmp_path / "data"
    env = {**os.environ, "KB_DATA_DIR": str(data), "KB_EMBED_BATCH_SIZE": "4",
           "KB_DENSE_PIECE_TOKENS": str(TEST_PIECE_TOKENS)}
    env.update(store_settings(store_backend))
    process = subprocess.Popen([str(KB), "ingest", str(folder)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and _indexed(data) < 5:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert _indexed(data) >= 5, "kb ingest indexed nothing in 300 s"
    kb = make_kb(data)
    assert_consistent(kb)
    assert 0 < len(kb.catalog.documents("indexed")) < 60
    # Keyed as `kb ingest` keys them, so the killed run's documents are recognised.
    kb.ingest([kb.upload_source("file", str(p.resolve()), p.name, p, None)
               for p in sorted(folder.iterdir())])
    assert_consistent(kb)
    assert len(kb.catalog.documents("indexed")) == 60


def _indexed(data: Path) -> int:
    try:
        with sqlite3.connect(data / "catalog.sqlite3", timeout=1) as db:
            return int(db.execute(
                "SELECT COUNT(*) FROM documents WHERE status = 'indexed'"
            ).fetchone()[0])
    except sqlite3.Error:
        return 0


def test_a_file_stored_twice_is_found_once_by_every_mode(make_kb: MakeKb, tmp_path: Path) -> None:
    kb = make_kb()
    a, b = write(tmp_path / "a" / "o.txt", OCEAN), write(tmp_path / "b" / "o.txt", OCEAN)
    kb.ingest([src(a), src(b), src(write(tmp_path / "p.txt", PARIS))])
    for mode in ("dense", "lexical", "hybrid"):
        texts = [h.text for h in kb.search("blue whales largest animals", 5, mode=mode)]
        assert len(texts) == len(set(texts)) and len(texts) >= 1, mode
