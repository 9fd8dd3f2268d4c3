"""`kb serve` as a real process, over real HTTP."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, wait_until_up
from tests.filegen import make_slow_pdf

KB = Path(sys.executable).with_name("kb")


@pytest.mark.slow
def test_serve_ingest_search_and_busy_data_dir(tmp_path: Path) -> None:
    server, base = start(tmp_path)
    env = {**os.environ, "KB_DATA_DIR": str(tmp_path / "data")}
    try:
        files = [("files", ("tea.txt", b"Green tea is steeped at eighty degrees."))]
        job = httpx.post(f"{base}/v1/documents", files=files).json()
        for _ in range(100):
            job = httpx.get(f"{base}/v1/jobs/{job['id']}").json()
            if job["status"] == "done":
                break
            time.sleep(0.2)
        hits = httpx.post(f"{base}/v1/search", json={"query": "tea temperature", "k": 1}).json()
        assert hits["results"][0]["source"] == "tea.txt"
        # The CLI refuses to open the data directory the server holds, and says why.
        busy = subprocess.run([str(KB), "status"], env=env, capture_output=True, text=True)
        assert busy.returncode == 2 and "in use by another kb process" in busy.stderr
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    out, err = server.communicate(timeout=10)
    assert "Application startup complete" in err
    assert "POST /v1/search" not in out + err  # no access log unless KB_ACCESS_LOG is set


def start(tmp_path: Path, **env: str) -> tuple[subprocess.Popen[str], str]:
    """`kb serve` on a free port with extra settings; returns it and its URL once ready."""
    port = free_port()
    full = {**os.environ, "KB_DATA_DIR": str(tmp_path / "data"), "KB_PORT": str(port), **env}
    server = subprocess.Popen([str(KB), "serve"], env=full, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    wait_until_up(server, f"{base}/readyz", 90)
    return server, base


def busy_children(pid: int, seconds: float = 1.5) -> float:
    """CPU seconds the process's children used over ``seconds`` (parsers at work)."""

    def used() -> float:
        total = 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                try:
                    fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                total += int(fields[11]) + int(fields[12])  # utime + stime, in ticks
        return total / os.sysconf("SC_CLK_TCK")

    before = used()
    time.sleep(seconds)
    return used() - before


@pytest.mark.slow
def test_a_client_that_hangs_up_cancels_its_upload(tmp_path: Path) -> None:
    import socket

    slow = make_slow_pdf(tmp_path / "slow.pdf", pages=1000, operations=300_000).read_bytes()
    server, base = start(tmp_path, KB_PARSE_CPU_SECONDS="600")
    try:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"PUT /process HTTP/1.1\r\nHost: kb\r\nX-Filename: slow.pdf\r\n"
                         b"X-OpenWebUI-User-Id: alice\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(slow) + slow)
            time.sleep(3)
            assert busy_children(server.pid, 1.0) > 0.5  # a parser is working on it
        # Hung up: the parser is stopped and nothing of the file is kept.
        time.sleep(2)
        assert busy_children(server.pid) < 0.3
        assert httpx.get(f"{base}/v1/documents").json()["documents"] == []
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    with closing(sqlite3.connect(tmp_path / "data" / "catalog.sqlite3")) as db:
        assert db.execute("SELECT COUNT(*) FROM pending").fetchone()[0] == 0


@pytest.mark.slow
def test_sigterm_cancels_the_running_job_and_exits_promptly(tmp_path: Path) -> None:
    server, base = start(tmp_path, KB_PARSE_CPU_SECONDS="600", KB_ACCESS_LOG="true")
    slow = make_slow_pdf(tmp_path / "slow.pdf", pages=1000, operations=300_000).read_bytes()
    files = [("files", ("a.txt", b"Apples are red.")), ("files", ("slow.pdf", slow))]
    job = httpx.post(f"{base}/v1/documents", files=files).json()
    deadline = time.monotonic() + 30
    while httpx.get(f"{base}/v1/jobs/{job['id']}").json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(2)  # inside the slow PDF
    stopped = time.monotonic()
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=30)
    assert time.monotonic() - stopped < 10
    assert '"GET /v1/jobs/' in server.communicate(timeout=10)[0]  # KB_ACCESS_LOG: on stdout
    data = tmp_path / "data"
    with closing(sqlite3.connect(data / "jobs.sqlite3")) as db:
        status, error = db.execute("SELECT status, error FROM jobs").fetchone()
    with closing(sqlite3.connect(data / "catalog.sqlite3")) as db:
        pending = db.execute("SELECT COUNT(*) FROM pending").fetchone()[0]
    assert status == "interrupted" and "upload them again" in error
    assert pending == 0
    assert list((data / "uploads").iterdir()) == []
