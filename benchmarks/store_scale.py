"""The stores at scale: embedded Chroma + the tantivy index against milvus-lite.

Each store gets the same synthetic chunks, in its own process (so resident
memory is its own): ``--chunks`` 384-dim random unit vectors, each with a
``--words``-word text from a Zipf vocabulary (``lexical_scale.Corpus``), one
chunk in ten owned by a user, the rest shared. They go in through the
store protocol in batches, as ingest writes them. Reported per store: insert
throughput, dense and hybrid query p50/p99 (k=10, with and without a
per-user filter; hybrid is ``retrieval.search.search``: both legs and their
fusion, minus embedding the query), peak resident memory and disk. A store
stops early if it passes ``--minutes`` of inserting and says how far it got.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import emit, peak_rss_mb, rate  # noqa: E402
from benchmarks.lexical_scale import Corpus, chunks, vocabulary  # noqa: E402

DIM = 384
OWNER_EVERY = 10  # one chunk in ten is a user's own; the rest are shared


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=300_000)
    parser.add_argument("--words", type=int, default=100, help="words per chunk")
    parser.add_argument("--vocabulary", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1_000, help="chunks per write")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=30, help="insert budget per store")
    parser.add_argument("--stores", default="chroma,milvus")
    parser.add_argument("--store", help=argparse.SUPPRESS)  # one store, in a child process
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--out", help="also write the JSON result to this file")
    return parser.parse_args()


def open_store(kind: str, folder: Path) -> tuple[Any, Any]:
    """The store family's backend under ``folder`` and one collection in it."""
    from retrieval.stores import open_backend

    backend = open_backend(kind, folder)  # type: ignore[arg-type]
    return backend, backend.open("kb_scale", DIM)


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random unit vectors."""
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def owned(batch: list[Any]) -> list[Any]:
    """The same chunks, one in ten owned by a user (alice or bob)."""
    from dataclasses import replace

    return [replace(c, owner=("alice", "bob")[i % 2] if i % OWNER_EVERY == 0 else None)
            for i, c in enumerate(batch)]


def build(store: Any, args: argparse.Namespace) -> tuple[int, float]:
    """Insert up to ``--chunks`` chunks; returns how many went in and the seconds taken."""
    corpus = Corpus(vocabulary(args.vocabulary, random.Random(1)), args.words)
    rng = np.random.default_rng(2)
    done, started = 0, time.perf_counter()
    while done < args.chunks and time.perf_counter() - started < args.minutes * 60:
        n = min(args.batch, args.chunks - done)
        store.add(owned(chunks(corpus.texts(n), done)), unit_vectors(rng, n))
        done += n
        if done % (20 * args.batch) == 0:
            print(f"  {args.store}: {done:,} chunks, {time.perf_counter() - started:.0f} s",
                  file=sys.stderr, flush=True)
    return done, time.perf_counter() - started


def timings(run: Any, queries: list[Any]) -> dict[str, float]:
    """p50 and p99 of ``run(query)``, in milliseconds."""
    run(queries[0])  # warm caches
    seconds = []
    for query in queries:
        started = time.perf_counter()
        run(query)
        seconds.append(time.perf_counter() - started)
    p50, p99 = np.percentile(seconds, [50, 99]) * 1000
    return {"p50_ms": round(float(p50), 2), "p99_ms": round(float(p99), 2)}


def measure_queries(store: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Dense and hybrid latency, with and without a per-user filter."""
    from retrieval.search import search
    from retrieval.types import Scope

    corpus = Corpus(vocabulary(args.vocabulary, random.Random(1)), 4, seed=11)
    texts = corpus.texts(args.queries)
    vectors = unit_vectors(np.random.default_rng(3), args.queries)
    pairs = list(zip(texts, vectors, strict=True))
    everything_live = lambda ids: {i: 1 for i in ids}  # noqa: E731 - all chunks are current
    out: dict[str, Any] = {}
    for label, scope in (("all", None), ("user_filter", Scope(("", "alice")))):

        def dense(p: tuple[str, np.ndarray], scope: Scope | None = scope) -> Any:
            return store.query(p[1], 10, scope)

        def hybrid(p: tuple[str, np.ndarray], scope: Scope | None = scope) -> Any:
            return search(store, p[0], lambda _: p[1], 10, everything_live, scope=scope)

        out[f"dense_{label}"] = timings(dense, pairs)
        out[f"hybrid_{label}"] = timings(hybrid, pairs)
    return out


def disk_mb(folder: Path) -> float:
    """Size of everything under ``folder``."""
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20, 1)


def one_store(args: argparse.Namespace) -> dict[str, Any]:
    """Build and measure one store (in this process)."""
    folder = Path(args.dir)
    backend, store = open_store(args.store, folder)
    try:
        inserted, seconds = build(store, args)
        result: dict[str, Any] = {
            "store": args.store, "chunks": inserted, "insert_seconds": round(seconds, 1),
            "insert_chunks_per_s": rate(inserted, seconds),
            "complete": inserted == args.chunks, "count": store.count(),
        }
        result |= measure_queries(store, args)
    finally:
        store.close()
        backend.close()
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    result["disk_mb"] = disk_mb(folder)
    return result


def main() -> None:
    """Run each store in a child process and report them side by side."""
    args = parse_args()
    if args.store:
        print(json.dumps(one_store(args)))
        return
    results = []
    for kind in args.stores.split(","):
        folder = Path(tempfile.mkdtemp(prefix=f"kb-scale-{kind}-"))
        try:
            options = ["--chunks", args.chunks, "--words", args.words, "--vocabulary",
                       args.vocabulary, "--batch", args.batch, "--queries", args.queries,
                       "--minutes", args.minutes, "--store", kind, "--dir", folder]
            child = subprocess.run(
                [sys.executable, __file__, *map(str, options)],
                check=True, stdout=subprocess.PIPE, text=True,
            )
            results.append(json.loads(child.stdout.splitlines()[-1]))
            print(json.dumps(results[-1]), file=sys.stderr)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    emit({"chunks": args.chunks, "words": args.words, "stores": results}, args.out)


if __name__ == "__main__":
    main()
