"""Helpers shared by the benchmark scripts: SciFact files, settings, memory, output."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.settings import Settings
from retrieval.embedders import Embedder, fast_tokenizer, resolve_local_model, tokenizer_file

ROOT = Path(__file__).resolve().parent.parent
SCIFACT = Path("../shared/eval/scifact")
DEFAULT_CORPUS = SCIFACT / "corpus.jsonl"
DEFAULT_QUERIES = SCIFACT / "queries.jsonl"
OUT_DIR = ROOT / "benchmarks" / "out"  # git-ignored cache for generated inputs
KB_BIN = ROOT / ".venv" / "bin" / "kb"


def repo_path(path: str | Path) -> Path:
    """``path`` resolved against the repository root when it is relative."""
    return (ROOT / Path(path)).resolve()


def read_jsonl(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The first ``limit`` records of a JSON-lines file (all when ``limit`` is None)."""
    records: list[dict[str, Any]] = []
    with repo_path(path).open(encoding="utf-8") as f:
        for line in f:
            if limit is not None and len(records) >= limit:
                break
            if line.strip():
                records.append(json.loads(line))
    return records


def abstract_text(record: dict[str, Any]) -> str:
    """A SciFact abstract as the benchmarks write it: title, blank line, text."""
    return f"{record.get('title', '')}\n\n{record['text']}"


def write_scifact_files(corpus_path: str | Path, folder: Path, limit: int) -> list[Path]:
    """Write the first ``limit`` SciFact abstracts as ``<_id>.txt`` files into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for record in read_jsonl(corpus_path, limit):
        path = folder / f"{record['_id']}.txt"
        path.write_text(abstract_text(record), encoding="utf-8")
        paths.append(path)
    return paths


def read_queries(path: str | Path = DEFAULT_QUERIES) -> list[str]:
    """All SciFact query texts, in file order."""
    return [record["text"] for record in read_jsonl(path)]


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (Linux reports ru_maxrss in KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kib / 1024, 1)


def bench_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a benchmark data dir; KB_* variables still apply to what is not passed."""
    return Settings(data_dir=data_dir, **overrides)


def child_env(data_dir: Path | None = None) -> dict[str, str]:
    """Environment for a ``kb`` subprocess: offline, and pointed at ``data_dir``."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    if data_dir is not None:
        env["KB_DATA_DIR"] = str(data_dir)
    return env


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rate(count: float, seconds: float) -> float:
    """``count`` per second, rounded; 0 when no time was measured."""
    return round(count / seconds, 2) if seconds > 0 else 0.0


def embed_in_slices(embedder: Any, texts: list[str], batch: int) -> tuple[np.ndarray, float]:
    """``embed_documents`` over ``texts`` in slices of ``batch``, as the pipeline: the
    vectors, and the seconds the embedding took."""
    start = time.perf_counter()
    parts = [embedder.embed_documents(texts[first : first + batch])
             for first in range(0, len(texts), batch)]
    seconds = time.perf_counter() - start
    return np.vstack(parts), seconds


def emit(result: dict[str, Any], out: str | None) -> None:
    """Print ``result`` as JSON and also write it to ``out`` when given."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n", encoding="utf-8")
    sys.stdout.flush()


def timed_ingest(kb: Any, files: list[Path]) -> tuple[float, list[Any]]:
    """Seconds for ``kb.ingest`` of ``files`` with the model warm and a parser worker
    started, and the outcomes; exits when any file fails (the figures would be wrong)."""
    from ingest.pipeline import FAILED, Source

    kb.embedder.embed_documents(["warm up the model"])
    list(kb.parser.parse(files[0], files[0].name, kb.limits))  # start a worker
    start = time.perf_counter()
    outcomes = kb.ingest([Source(f"file:{p}", p.name, p) for p in files])
    seconds = time.perf_counter() - start
    failed = [o for o in outcomes if o.status == FAILED]
    if failed:
        raise SystemExit(f"{len(failed)} files failed, e.g. {failed[0]}")
    return seconds, outcomes


class FakeEmbedder(Embedder):
    """Deterministic unit vectors seeded by the text; real MiniLM token counts."""

    name = "fake-minilm"
    dimension = 384
    max_tokens = 256

    def __init__(self) -> None:
        """Load the packaged model's tokenizer only (no weights)."""
        self.tokenizer_path = tokenizer_file(resolve_local_model(None))
        self._count = fast_tokenizer(self.tokenizer_path)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One hashed random unit vector per text."""
        return np.stack([self._vector(text) for text in texts])

    def count_tokens(self, text: str) -> int:
        """Token count from the packaged model's tokenizer."""
        return self._count(text)

    def cached_texts(self) -> int:
        """Entries in the token-count cache (bounded by its LRU size)."""
        return int(self._count.cache_info().currsize)  # type: ignore[attr-defined]

    def _vector(self, text: str) -> np.ndarray:
        """A unit vector seeded by the text's hash: same text, same vector."""
        seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
        vector = np.random.default_rng(seed).standard_normal(self.dimension, dtype=np.float32)
        return vector / np.linalg.norm(vector)
