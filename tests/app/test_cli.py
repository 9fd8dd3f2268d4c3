"""The ``kb`` command line, run in-process on a temporary data directory."""

from __future__ import annotations

import json
import shutil
from contextlib import closing
from pathlib import Path

import pytest

from app.cli import main
from retrieval.stores.chroma import ChromaBackend
from tests.conftest import write
from tests.filegen import (
    make_encrypted_pdf,
    make_mixed_pdf,
    make_pdf,
    make_photo,
    make_scan_pdf,
)


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every command in a test uses the same fresh data directory."""
    path = tmp_path / "data"
    monkeypatch.setenv("KB_DATA_DIR", str(path))
    return path


def test_ingest_folder_summary_and_exit_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = tmp_path / "docs"
    write(docs / "a.txt", "Solar panels convert sunlight into electricity.")
    write(docs / "sub" / "b.md", "# Wind\nWind turbines turn kinetic energy into power.")
    make_pdf(docs / "c.pdf", ["Hydro dams store water in reservoirs."])
    write(docs / "image.gif", "not ingested: unsupported in a folder")
    write(docs / ".hidden.txt", "skipped")
    assert main(["ingest", str(docs)]) == 0
    out = capsys.readouterr().out
    assert "3 added, 0 updated, 0 unchanged, 0 failed, 2 skipped" in out

    make_encrypted_pdf(docs / "locked.pdf")
    assert main(["ingest", str(docs)]) == 1
    out = capsys.readouterr().out
    assert "0 added, 0 updated, 3 unchanged, 1 failed" in out
    assert "failed: locked.pdf: encrypted PDF" in out


def test_explicit_unsupported_file_fails_with_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest", str(write(tmp_path / "run.exe", "MZ binary"))]) == 1
    assert "unsupported type" in capsys.readouterr().out
    assert main(["ingest", str(tmp_path / "missing.txt")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_search_json_status_rm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "a.txt", "Solar panels convert sunlight into electricity.")
    write(tmp_path / "b.txt", "Sourdough bread needs a starter culture.")
    main(["ingest", str(tmp_path / "a.txt"), str(tmp_path / "b.txt")])
    capsys.readouterr()
    assert main(["search", "how to bake bread", "-k", "1", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert [r["source"] for r in results] == ["b.txt"]
    assert main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)["status"]
    assert status["documents_indexed"] == 2
    assert status["vectors"] == status["lexical_chunks"] == status["chunks"] == 2
    assert main(["rm", "b.txt", "nothing-here"]) == 1
    captured = capsys.readouterr()
    assert "removed b.txt" in captured.out and "no document" in captured.err
    main(["search", "bread", "-k", "5", "--json"])
    assert {r["source"] for r in json.loads(capsys.readouterr().out)["results"]} == {"a.txt"}


def test_scans_and_photos_are_found_with_their_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = make_mixed_pdf(tmp_path / "report.pdf", [
        ("text", "Quarterly report of the facilities team."),
        ("scan", "The boiler room inspection found corroded valves on the third floor; "
                 "replacement is scheduled for March."),
        ("scan", None),
    ])
    notice = make_photo(tmp_path / "notice.jpg", "食堂将于下周一起延长营业时间至晚上九点。")
    assert main(["ingest", str(report), str(notice)]) == 0
    capsys.readouterr()
    assert main(["search", "corroded valves boiler inspection", "-k", "1"]) == 0
    assert "report.pdf, page 2 (OCR)" in capsys.readouterr().out
    assert main(["search", "食堂营业时间", "-k", "1", "--json"]) == 0
    (hit,) = json.loads(capsys.readouterr().out)["results"]
    assert (hit["source"], hit["page"], hit["ocr"]) == ("notice.jpg", 1, True)
    assert main(["status", "--all"]) == 0
    out = capsys.readouterr().out
    assert "report.pdf  (3 pages: 2 OCR'd, 1 blank)" in out
    assert "notice.jpg  (1 page: 1 OCR'd)" in out
    assert main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)["status"]
    assert (status["pages_ocr"], status["pages_blank"]) == (3, 1)
    assert status["ocr"].startswith("auto: rapidocr, tesseract")


def test_reindex_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "a.txt", "Solar panels convert sunlight into electricity.")
    main(["ingest", str(tmp_path / "a.txt")])
    assert main(["reindex"]) == 0
    assert "re-indexed 1 documents" in capsys.readouterr().out


def test_invalid_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KB_CHUNK_TOKENS", "lots")
    assert main(["status"]) == 2
    assert "KB_CHUNK_TOKENS" in capsys.readouterr().err


def test_eval_on_a_tiny_beir_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "tiny"
    corpus = {
        "d1": "Cats purr when they are content.",
        "d2": "Volcanoes erupt molten lava.",
        "d3": "Penguins live in the southern hemisphere.",
    }
    write(
        root / "corpus.jsonl",
        "\n".join(json.dumps({"_id": k, "title": "", "text": v}) for k, v in corpus.items()),
    )
    write(
        root / "queries.jsonl",
        "\n".join(
            json.dumps(q)
            for q in [
                {"_id": "q1", "text": "why do cats purr"},
                {"_id": "q2", "text": "lava from volcanoes"},
                {"_id": "q3", "text": "unjudged query"},
            ]
        ),
    )
    write(root / "qrels" / "train.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    assert main(["eval", str(root), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["queries"] == 2 and result["documents"] == 3
    assert set(result["modes"]) == {"dense", "lexical", "hybrid"}
    for scores in result["modes"].values():
        assert scores["ndcg@10"] == pytest.approx(1.0)
        assert scores["mrr@10"] == pytest.approx(1.0)
        assert scores["recall@100"] == pytest.approx(1.0)
    assert main(["eval", str(root), "--mode", "lexical"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split() == ["mode", "ndcg@10", "recall@100", "mrr@10"]
    assert table[2].split()[:2] == ["lexical", "1.0000"] and len(table) == 3

    # The corpus as files (here a scan and a PDF) replaces corpus.jsonl's text.
    scanned = tmp_path / "scanned"
    shutil.copytree(root, scanned)
    (scanned / "files").mkdir()
    make_scan_pdf(scanned / "files" / "d1.pdf", [corpus["d1"]])
    make_pdf(scanned / "files" / "d2.pdf", [corpus["d2"]])
    assert main(["eval", str(scanned), "--json", "--mode", "lexical"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["documents"] == 2
    assert result["modes"]["lexical"]["ndcg@10"] == pytest.approx(1.0)


def test_search_modes_and_explain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "a.txt", "Solar panels convert sunlight into electricity.")
    write(tmp_path / "b.txt", "光伏电站把太阳能转换成电能。")
    main(["ingest", str(tmp_path / "a.txt"), str(tmp_path / "b.txt")])
    capsys.readouterr()
    assert main(["search", "太阳能", "--mode", "lexical", "--json"]) == 0
    [hit] = json.loads(capsys.readouterr().out)["results"]
    assert hit["source"] == "b.txt" and set(hit["scores"]) == {"lexical"}
    assert hit["ranks"] == {"lexical": 1}
    assert main(["search", "solar electricity", "-k", "1", "--explain"]) == 0
    out = capsys.readouterr().out
    assert "a.txt" in out and "dense " in out and "lexical " in out and "(#1)" in out


def test_webui_without_open_webui_installed_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KB_WEBUI_VENV", str(tmp_path / "no-venv"))
    assert main(["webui", "--port", "8099"]) == 2
    assert "make webui-env" in capsys.readouterr().err


def test_search_as_a_user_sees_their_private_upload(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.factory import open_knowledge_base
    from app.settings import Settings
    from ingest.pipeline import Source

    kb = open_knowledge_base(Settings())
    try:
        path = write(tmp_path / "notes.txt", "The vault combination is hidden in the notes.")
        kb.ingest([Source("owui:1", "notes.txt", path, owner="u-1")])
    finally:
        kb.close()
    assert main(["search", "vault combination", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"] == []
    assert main(["search", "vault combination", "--json", "--user", "u-1"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["source"] == "notes.txt"
    assert main(["status", "--all"]) == 0
    assert "[private to u-1]" in capsys.readouterr().out


def test_serve_beyond_localhost_needs_a_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "refusing to listen on 0.0.0.0 without KB_API_KEY" in err and "--insecure-no-auth" in err
    from app.cli import _is_loopback

    assert all(_is_loopback(h) for h in ("127.0.0.1", "::1", "localhost"))
    assert not any(_is_loopback(h) for h in ("0.0.0.0", "10.0.0.5", "kb.example"))


def test_library_log_lines_stay_out_of_the_cli(tmp_path: Path, data_dir: Path) -> None:
    import os
    import subprocess
    import sys

    truncated = tmp_path / "cut.pdf"
    make_pdf(truncated, ["Hello world, page one."])
    data = truncated.read_bytes()
    truncated.write_bytes(data[: data.rfind(b"%%EOF")])  # pypdf warns "EOF marker not found"
    kb = Path(sys.executable).with_name("kb")  # a real process: pytest's log capture is not on
    done = subprocess.run([str(kb), "ingest", str(truncated)], capture_output=True, text=True,
                          env={**os.environ, "KB_DATA_DIR": str(data_dir)}, check=False)
    assert done.returncode == 1
    assert "pypdf" not in done.stderr and "EOF marker" not in done.stderr
    assert "failed: cut.pdf: damaged PDF" in done.stdout


def test_on_milvus_the_cli_shows_kbs_messages_only(tmp_path: Path, data_dir: Path) -> None:
    import os
    import subprocess
    import sys

    kb = Path(sys.executable).with_name("kb")  # a real process: pytest's log capture is not on
    env = {**os.environ, "KB_DATA_DIR": str(data_dir), "KB_STORE": "milvus"}
    note = write(tmp_path / "docs" / "whales.txt", "Blue whales are the largest animals.")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(kb), *args], capture_output=True, text=True, env=env,
                              check=False)

    ingested, found = run("ingest", str(note.parent)), run("search", "largest whales", "--json")
    assert ingested.returncode == found.returncode == 0, ingested.stderr + found.stderr
    assert (data_dir / "milvus.db").is_dir() and not (data_dir / "chroma").exists()
    assert json.loads(found.stdout)["results"][0]["source"] == "whales.txt"
    for err in (ingested.stderr, found.stderr):
        assert "Traceback" not in err and "ERROR" not in err and "WARNING" not in err, err


@pytest.mark.slow
def test_ctrl_c_rolls_back_and_exits_130_without_an_abort(tmp_path: Path, data_dir: Path) -> None:
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(300):
        words = " ".join(f"topic{i} word{j} about tides and sea currents" for j in range(60))
        (folder / f"doc{i:03}.txt").write_text(words)
    kb = Path(sys.executable).with_name("kb")
    env = {**os.environ, "KB_DATA_DIR": str(data_dir)}
    # Ctrl-C as a terminal sends it, even where this suite runs as a background job
    # (which a shell starts with SIGINT ignored, and its children inherit that).
    ingest = subprocess.Popen([str(kb), "ingest", str(folder)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while _indexed(data_dir) < 5:  # the model is loaded and files are being written
        assert time.monotonic() < deadline and ingest.poll() is None
        time.sleep(0.3)
    ingest.send_signal(signal.SIGINT)
    out, err = ingest.communicate(timeout=60)
    assert ingest.returncode == 130, err[-2000:]
    assert "terminate called" not in err and "Traceback" not in err
    assert "interrupted: documents in flight were rolled back" in err
    with closing(sqlite3.connect(data_dir / "catalog.sqlite3")) as db:  # rolled back before exit
        assert db.execute("SELECT COUNT(*) FROM pending").fetchone()[0] == 0
    status = subprocess.run([str(kb), "status", "--json"], env=env, capture_output=True,
                            text=True, check=True)
    summary = json.loads(status.stdout)["status"]
    assert 0 < summary["documents_indexed"] < 300
    assert summary["vectors"] >= summary["lexical_chunks"] == summary["chunks"]
    chroma = ChromaBackend(path=data_dir / "chroma")  # the chunks' own records, pieces aside
    try:
        assert chroma.open(summary["collection"]).count() == summary["chunks"]
    finally:
        chroma.close()


def _indexed(data_dir: Path) -> int:
    """Documents indexed so far, read while another process writes (WAL allows it)."""
    import sqlite3

    catalog = data_dir / "catalog.sqlite3"
    if not catalog.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{catalog}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT COUNT(*) FROM documents WHERE status = 'indexed'").fetchone()
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0
    return int(row[0])
