"""Hostile files against a real ``kb serve``: time to fail, the service's peak memory, and
what another user's small upload costs meanwhile (vs alone, same run).

The files are the audit's: a ~800 KB PDF of 5,000 pages that all draw one
5.5 MB stream of empty text shows (pypdf: ~9 s a page), and a ~50 KB DOCX of
5 million empty paragraphs (python-docx: > 2 GB). Default limits apply
unless ``--cpu-seconds`` is given.

    .venv/bin/python benchmarks/hostile.py
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402
from benchmarks.search_latency import start_server, stop_server, wait_ready  # noqa: E402
from tests.filegen import make_docx_element_bomb, make_slow_pdf  # noqa: E402

SMALL = b"Dolphins sleep with one half of the brain at a time."


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-seconds", type=int, help="KB_PARSE_CPU_SECONDS for the server")
    parser.add_argument("--out", help="also write the JSON result to this file")
    return parser.parse_args()


def put(client: httpx.Client, name: str, body: bytes, user: str) -> tuple[float, httpx.Response]:
    start = time.perf_counter()
    response = client.put("/process", content=body, headers={
        "X-Filename": name, "X-OpenWebUI-User-Id": user}, timeout=3600)
    return time.perf_counter() - start, response


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    """Peak (VmHWM) or current (VmRSS) resident memory of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def attack(client: httpx.Client, server_pid: int, name: str, body: bytes) -> dict[str, Any]:
    """Send one hostile file; while it is parsed, another user uploads a small file."""
    result: dict[str, Any] = {"bytes": len(body)}

    def hostile() -> None:
        seconds, response = put(client, name, body, "mallory")
        result.update(seconds_to_fail=round(seconds, 2), status=response.status_code,
                      reason=response.text[:200])

    thread = threading.Thread(target=hostile)
    thread.start()
    time.sleep(2)
    seconds, response = put(client, f"small-{name}.txt", SMALL, "alice")
    result["small_upload_meanwhile_s"] = round(seconds, 3)
    result["small_upload_status"] = response.status_code
    thread.join()
    result["service_peak_rss_mb"] = rss_mb(server_pid)
    return result


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="kb-hostile-") as tmp:
        work = Path(tmp)
        slow = make_slow_pdf(work / "slow.pdf", pages=5000, operations=900_000).read_bytes()
        bomb = make_docx_element_bomb(work / "bomb.docx", 5_000_000).read_bytes()
        if args.cpu_seconds:
            os.environ["KB_PARSE_CPU_SECONDS"] = str(args.cpu_seconds)
        port, log = common.free_port(), work / "serve.log"
        server = start_server(work / "data", port, log)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
                wait_ready(client, server, log)
                put(client, "warm.txt", b"warm up the model and a parser", "alice")
                alone = [put(client, f"alone{i}.txt", SMALL, "alice")[0] for i in range(5)]
                result = {
                    "service_rss_before_mb": rss_mb(server.pid, "VmRSS"),
                    "small_upload_alone_s": round(sorted(alone)[2], 3),
                    "pdf": attack(client, server.pid, "slow.pdf", slow),
                    "docx": attack(client, server.pid, "bomb.docx", bomb),
                }
        finally:
            stop_server(server)
    common.emit(result, args.out)


if __name__ == "__main__":
    main()
