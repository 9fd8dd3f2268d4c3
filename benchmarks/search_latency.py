"""Search latency: ``POST /v1/search`` (k=10) on a real server against the raw path.

Targets: p50 and p99 of the API stay within 1.3x of the raw path (embed one
query + one Chroma query) for dense search, and within 1.5x for hybrid search
(dense + lexical + fusion, the default; ``--mode``). The data dir is locked by
the server, so the passes run one after another: server, raw, server
(restarted), raw; per-pass figures and the medians over passes are reported,
to show the noise. The server is timed through ``http.client`` (the ratios),
and through ``httpx`` in turns with it (``httpx_*``): the client's own work is
not the server's.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import common
import httpx
import numpy as np

TARGET_RATIO = {"dense": 1.3, "lexical": 1.3, "hybrid": 1.5}
K = 10
READY_TIMEOUT_S = 180


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="an already-ingested data dir to reuse")
    parser.add_argument("--docs", type=int, default=5183, help="abstracts to ingest without it")
    parser.add_argument("--queries", type=int, default=300, help="timed requests per pass")
    parser.add_argument("--warmup", type=int, default=10, help="untimed requests per pass")
    parser.add_argument("--corpus", default=str(common.DEFAULT_CORPUS), help="corpus.jsonl")
    parser.add_argument("--queries-file", default=str(common.DEFAULT_QUERIES))
    parser.add_argument("--mode", choices=list(TARGET_RATIO), default="hybrid")
    parser.add_argument("--out", help="also write the JSON result to this file")
    return parser.parse_args()


def ingest_corpus(corpus: str, docs: int, work: Path) -> Path:
    """Ingest ``docs`` abstracts with ``kb ingest`` into a new data dir under ``work``."""
    data_dir = work / "data"
    folder = work / "docs"
    common.write_scifact_files(corpus, folder, docs)
    done = subprocess.run(
        [str(common.KB_BIN), "ingest", str(folder)], env=common.child_env(data_dir),
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"kb ingest exited {done.returncode}: {done.stderr[-2000:]}")
    return data_dir


def start_server(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``kb serve`` on ``port`` in its own process, logging to ``log``."""
    with log.open("ab") as sink:
        return subprocess.Popen(
            [str(common.KB_BIN), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=common.child_env(data_dir), stdout=sink, stderr=subprocess.STDOUT,
        )


def wait_ready(client: httpx.Client, server: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``/readyz`` until it answers 200; fail if the server exits or takes too long."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"kb serve exited {server.returncode}: {log.read_text()[-2000:]}")
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"kb serve not ready after {READY_TIMEOUT_S}s; see {log}")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    """Ctrl-C the server and wait for it to release the data dir."""
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def auth_headers(data_dir: Path) -> dict[str, str]:
    """The bearer header when KB_API_KEY is set (the server reads the same variable)."""
    key = common.bench_settings(data_dir).api_key
    return {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}


def server_pass(
    data_dir: Path, queries: list[str], warmup: int, log: Path, mode: str
) -> dict[str, list[float]]:
    """Milliseconds per sequential keep-alive ``POST /v1/search`` against a fresh server,
    by client: ``stdlib`` (``http.client``, the thinnest there is: what is timed is the
    server) and ``httpx`` (about 1 ms more of the client's own work per request here),
    taking turns query by query."""
    port = common.free_port()
    server = start_server(data_dir, port, log)
    headers = {"Content-Type": "application/json", **auth_headers(data_dir)}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers,
                          timeout=60) as client:
            wait_ready(client, server, log)
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            latencies: dict[str, list[float]] = {"stdlib": [], "httpx": []}
            for i, query in enumerate(queries):
                body = json.dumps({"query": query, "k": K, "mode": mode})
                for name in latencies:
                    start = time.perf_counter()
                    if name == "httpx":
                        response = client.post("/v1/search", content=body)
                        status, found = response.status_code, response.json()
                    else:
                        connection.request("POST", "/v1/search", body, headers)
                        reply = connection.getresponse()
                        status, found = reply.status, json.loads(reply.read())
                    elapsed = time.perf_counter() - start
                    if status != 200 or not found["results"]:
                        raise SystemExit(f"POST /v1/search answered {status}: {found}")
                    if i >= warmup:
                        latencies[name].append(elapsed * 1000)
            connection.close()
            return latencies
    finally:
        stop_server(server)


def raw_pass(data_dir: Path, queries: list[str], warmup: int) -> tuple[list[float], dict]:
    """Milliseconds per ``embed_query`` + one Chroma ``query`` in this process; store counts."""
    from app.factory import open_knowledge_base

    kb = open_knowledge_base(common.bench_settings(data_dir))
    try:
        collection = kb.store.vectors._collection
        include = ["documents", "metadatas", "distances"]  # what the service asks for
        latencies = []
        for i, query in enumerate(queries):
            start = time.perf_counter()
            vector = kb.embedder.embed_query(query)
            collection.query(query_embeddings=[vector], n_results=K, include=include)
            if i >= warmup:
                latencies.append((time.perf_counter() - start) * 1000)
        return latencies, {**kb.catalog.counts(), "vectors": kb.store.count()}
    finally:
        kb.close()  # closes Chroma too, so the next server opens it alone


def stats(latencies: list[float]) -> dict[str, float]:
    """p50, p90, p95, p99 and mean in milliseconds."""
    values = np.asarray(latencies)
    p50, p90, p95, p99 = np.percentile(values, [50, 90, 95, 99])
    return {
        "n": len(latencies), "p50_ms": round(float(p50), 2), "p90_ms": round(float(p90), 2),
        "p95_ms": round(float(p95), 2), "p99_ms": round(float(p99), 2),
        "mean_ms": round(float(values.mean()), 2),
    }


def median_stats(passes: list[dict[str, float]]) -> dict[str, float]:
    """Median over passes of each statistic (``n`` is the same in every pass)."""
    medians = {k: round(statistics.median(p[k] for p in passes), 2) for k in passes[0] if k != "n"}
    return {"n": passes[0]["n"], **medians}


def measure(
    data_dir: Path, queries: list[str], warmup: int, work: Path, mode: str
) -> dict[str, Any]:
    """Server, raw, server, raw; per-pass statistics, medians and ratios."""
    log = work / "server.log"
    server, through_httpx, raw = [], [], []
    for _ in range(2):
        passes = server_pass(data_dir, queries, warmup, log, mode)
        server.append(stats(passes["stdlib"]))
        through_httpx.append(stats(passes["httpx"]))
        latencies, counts = raw_pass(data_dir, queries, warmup)
        raw.append(stats(latencies))
    api, with_httpx, direct = median_stats(server), median_stats(through_httpx), median_stats(raw)
    return {
        "store": counts, "server": api, "raw": direct,
        "p50_ratio": round(api["p50_ms"] / direct["p50_ms"], 3),
        "p99_ratio": round(api["p99_ms"] / direct["p99_ms"], 3),
        "mean_ratio": round(api["mean_ms"] / direct["mean_ms"], 3),
        "mode": mode, "target_ratio": TARGET_RATIO[mode],
        "server_httpx": with_httpx,
        "httpx_p50_ratio": round(with_httpx["p50_ms"] / direct["p50_ms"], 3),
        "httpx_p99_ratio": round(with_httpx["p99_ms"] / direct["p99_ms"], 3),
        "server_passes": server, "httpx_passes": through_httpx, "raw_passes": raw,
    }


def main() -> None:
    """Prepare the data dir, run the passes, print the result."""
    args = parse_args()
    all_queries = common.read_queries(args.queries_file)
    total = args.warmup + args.queries
    queries = [all_queries[i % len(all_queries)] for i in range(total)]
    with tempfile.TemporaryDirectory(prefix="kb-bench-search-") as tmp:
        work = Path(tmp)
        data_dir = args.data_dir or ingest_corpus(args.corpus, args.docs, work)
        result = measure(data_dir.resolve(), queries, args.warmup, work, args.mode)
    result.update(data_dir=str(args.data_dir or "(temporary)"), k=K, queries=args.queries,
                  warmup=args.warmup)
    result["meets_target"] = max(result["p50_ratio"], result["p99_ratio"]) <= result["target_ratio"]
    common.emit(result, args.out)


if __name__ == "__main__":
    main()
