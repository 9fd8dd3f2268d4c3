"""Search latency with 20 concurrent clients, idle and during a large upload, same run.

A ``kb serve`` process holds a small SciFact index; rounds of ``--clients``
concurrent ``POST /v1/search`` run first with the service idle, then while
``POST /v1/documents`` ingests ``--upload`` more abstracts. Reported: p50/p95
per phase, errors, and the loaded ÷ idle ratios (target: p50 ≤ 10×, 0 errors),
idle being the same 20 clients; one client alone is reported too.

    .venv/bin/python benchmarks/search_under_load.py --base 200 --upload 1000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402
from benchmarks.search_latency import (  # noqa: E402
    auth_headers,
    ingest_corpus,
    start_server,
    stats,
    stop_server,
    wait_ready,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(common.DEFAULT_CORPUS))
    parser.add_argument("--base", type=int, default=200, help="abstracts indexed beforehand")
    parser.add_argument("--upload", type=int, default=1000, help="abstracts uploaded under load")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--idle-rounds", type=int, default=10)
    parser.add_argument("--out", help="also write the JSON result to this file")
    return parser.parse_args()


def search_round(
    client: httpx.Client, pool: ThreadPoolExecutor, queries: list[str]
) -> tuple[list[float], int]:
    """One round: every query at once; milliseconds of each success, and the error count."""

    def one(query: str) -> float | None:
        start = time.perf_counter()
        try:
            response = client.post("/v1/search", json={"query": query, "k": 10})
        except httpx.HTTPError:
            return None
        return (time.perf_counter() - start) * 1000 if response.status_code == 200 else None

    results = list(pool.map(one, queries))
    return [r for r in results if r is not None], sum(r is None for r in results)


def upload(client: httpx.Client, folder: Path) -> str:
    """Start an ingest job of every file in ``folder``; returns the job id."""
    files = [("files", (p.name, p.read_bytes(), "text/plain")) for p in sorted(folder.iterdir())]
    response = client.post("/v1/documents", files=files)
    response.raise_for_status()
    return str(response.json()["id"])


def job_running(client: httpx.Client, job_id: str) -> bool:
    return client.get(f"/v1/jobs/{job_id}").json()["status"] in ("queued", "running")


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    data_dir = ingest_corpus(args.corpus, args.base, work)
    records = common.read_jsonl(args.corpus, args.base + args.upload)[args.base :]
    folder = work / "upload"
    folder.mkdir()
    for record in records:
        (folder / f"{record['_id']}.txt").write_text(common.abstract_text(record))
    queries = common.read_queries()
    port, log = common.free_port(), work / "serve.log"
    server = start_server(data_dir, port, log)
    limits = httpx.Limits(max_connections=args.clients * 2)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth_headers(data_dir),
                          timeout=120, limits=limits) as client, \
                ThreadPoolExecutor(args.clients) as pool:
            wait_ready(client, server, log)
            search_round(client, pool, queries[: args.clients])  # warm-up
            single = [search_round(client, pool, [q])[0][0] for q in queries[:50]]
            idle: list[float] = []
            idle_errors = 0
            for i in range(args.idle_rounds):
                batch = queries[i * args.clients : (i + 1) * args.clients]
                latencies, errors = search_round(client, pool, batch)
                idle, idle_errors = idle + latencies, idle_errors + errors
            job = upload(client, folder)
            started = time.perf_counter()
            loaded: list[float] = []
            loaded_errors, rounds = 0, 0
            while job_running(client, job):
                offset = (rounds * args.clients) % max(1, len(queries) - args.clients)
                latencies, errors = search_round(
                    client, pool, queries[offset : offset + args.clients])
                loaded, loaded_errors = loaded + latencies, loaded_errors + errors
                rounds += 1
            ingest_s = time.perf_counter() - started
    finally:
        stop_server(server)
    idle_stats, loaded_stats, single_stats = stats(idle), stats(loaded), stats(single)
    return {
        "base_docs": args.base, "uploaded_docs": args.upload, "clients": args.clients,
        "idle_one_client": single_stats,
        "idle": {**idle_stats, "errors": idle_errors},
        "during_upload": {**loaded_stats, "errors": loaded_errors, "rounds": rounds,
                          "upload_seconds": round(ingest_s, 1)},
        "p50_ratio": round(loaded_stats["p50_ms"] / idle_stats["p50_ms"], 2),
        "p95_ratio": round(loaded_stats["p95_ms"] / idle_stats["p95_ms"], 2),
        "p50_ratio_to_one_client": round(loaded_stats["p50_ms"] / single_stats["p50_ms"], 2),
    }


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="kb-load-") as tmp:
        common.emit(run(args, Path(tmp)), args.out)


if __name__ == "__main__":
    main()
