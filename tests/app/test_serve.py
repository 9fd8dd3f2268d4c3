"""`kb serve` as a real process, over real HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

KB = Path(sys.executable).with_name("kb")


@pytest.mark.slow
def test_serve_ingest_search_and_busy_data_dir(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "KB_DATA_DIR": str(tmp_path / "data"), "KB_PORT": str(port)}
    server = subprocess.Popen([str(KB), "serve"], env=env, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
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
