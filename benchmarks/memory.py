"""Peak memory of ingesting one large TXT file and one long PDF.

Issue target: peak RSS stays bounded and does not grow with file size beyond the
text itself. Embedding hundreds of MB with the real model takes hours on a CPU, so
a deterministic fake embedder (real tokenizer, hashed random vectors) stands in.
Each case runs in a fresh subprocess, so ``ru_maxrss`` is that case's own peak.
``--stores null`` also runs every case with a no-op vector store, to separate the
pipeline's own memory from Chroma's (whose HNSW index grows with the chunk count).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import common
import numpy as np

MB = 2**20
BLOCK_CHARS = MB  # the TXT generator writes this much at a time
TINY_BYTES = 20_000
WORDS = (
    "the model system data paper result method study patient cell protein gene analysis "
    "network sample value effect change level process structure function response signal "
    "record document report policy market energy water climate surface region growth"
).split()
VERBS = "shows increases reduces affects supports explains predicts measures improves".split()
ADJECTIVES = "new large small early recent common complex stable rapid specific".split()


class NullStore:
    """A vector store that keeps nothing: isolates the pipeline from Chroma."""

    def add(self, chunks: Sequence[Any], vectors: np.ndarray) -> None:
        """Drop the chunks."""

    def delete(self, document_id: str, generation: int | None = None) -> None:
        """Nothing to delete."""

    def delete_many(self, generations: Sequence[Any]) -> None:
        """Nothing to delete."""

    def query(self, vector: np.ndarray, k: int, scope: Any = None) -> list[Any]:
        """Nothing to find."""
        return []

    def count(self) -> int:
        """Always empty."""
        return 0

    def stored(self, document_id: str, generation: int) -> Iterator[Any]:
        """Nothing stored."""
        return iter(())

    def close(self) -> None:
        """Nothing to release."""


def parse_args() -> argparse.Namespace:
    """Command-line options (``--child`` is the internal per-case mode)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txt-sizes", default="25,100", help="TXT sizes in MB, comma-separated")
    parser.add_argument("--pdf-pages", type=int, default=1000, help="pages of the PDF (0: none)")
    parser.add_argument("--stores", default="chroma,null", help="chroma, null or chroma,null")
    parser.add_argument("--work-dir", type=Path, help="where data dirs go (default: a temp dir)")
    parser.add_argument("--out", help="also write the JSON result to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--store", default="chroma", help=argparse.SUPPRESS)
    return parser.parse_args()


# -- generated inputs -----------------------------------------------------------


def sentences(rng: random.Random) -> Iterator[str]:
    """An endless stream of varied English-like sentences."""
    while True:
        subject = f"{rng.choice(ADJECTIVES)} {rng.choice(WORDS)}"
        obj = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))
        number = rng.randint(1, 99_999)
        yield f"The {subject} {rng.choice(VERBS)} the {obj} in case {number}."


def paragraphs(rng: random.Random) -> Iterator[str]:
    """Paragraphs of 3 to 9 sentences."""
    stream = sentences(rng)
    while True:
        yield " ".join(next(stream) for _ in range(rng.randint(3, 9)))


def make_txt(path: Path, size_bytes: int) -> Path:
    """Write about ``size_bytes`` of paragraphs, one block at a time (never held whole)."""
    if path.exists() and path.stat().st_size >= size_bytes:
        return path
    stream, written = paragraphs(random.Random(size_bytes)), 0
    with path.open("w", encoding="ascii") as f:
        while written < size_bytes:
            block: list[str] = []
            length = 0
            while length < min(BLOCK_CHARS, size_bytes - written):
                block.append(next(stream) + "\n\n")
                length += len(block[-1])
            f.write("".join(block))
            written += length
    return path


def make_pdf(path: Path, pages: int) -> Path:
    """Write a PDF of ``pages`` pages with a few paragraphs each, via fpdf2."""
    if path.exists():
        return path
    from fpdf import FPDF

    stream = paragraphs(random.Random(pages))
    pdf = FPDF()
    pdf.set_font("helvetica", size=10)
    for _ in range(pages):
        pdf.add_page()
        pdf.multi_cell(0, 5, "\n\n".join(next(stream) for _ in range(4)))
    pdf.output(str(path))
    return path


# -- one case, in a child process ---------------------------------------------------


def open_fake_kb(data_dir: Path, store: str) -> Any:
    """A KnowledgeBase over the fake embedder, with limits far above the test files."""
    from app.service import KnowledgeBase
    from ingest.chunking import ChunkSettings
    from ingest.loaders import Limits
    from retrieval.stores import open_backend

    kb = KnowledgeBase(
        data_dir=data_dir, embedder=common.FakeEmbedder(),
        backend=open_backend("chroma", data_dir),
        limits=Limits(max_file_bytes=8 * 2**30, max_chars=4 * 2**30), chunking=ChunkSettings(),
    )
    if store == "null":
        kb.store.close()
        kb.store = NullStore()
    return kb


def run_child(path: Path | None, data_dir: Path, store: str) -> dict[str, Any]:
    """Open the kb, ingest ``path`` (if any), and report this process's peak RSS."""
    from ingest.pipeline import Source

    kb = open_fake_kb(data_dir, store)
    before = common.peak_rss_mb()
    chunks, status, seconds = 0, "not run", 0.0
    if path is not None:
        start = time.perf_counter()
        outcome = kb.ingest([Source(f"file:{path}", path.name, path)])[0]
        seconds = time.perf_counter() - start
        chunks, status = outcome.chunks, outcome.error or outcome.status
    kb.close()
    return {"rss_before_ingest_mb": before, "peak_rss_mb": common.peak_rss_mb(),
            "chunks": chunks, "status": status, "seconds": round(seconds, 2),
            "token_cache_entries": kb.embedder.cached_texts()}


def measure_case(path: Path | None, data_dir: Path, store: str) -> dict[str, Any]:
    """Run one case in a fresh interpreter and parse its JSON line."""
    command = [sys.executable, __file__, "--child", "--data-dir", str(data_dir), "--store", store]
    if path is not None:
        command += ["--file", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, env=common.child_env(),
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"case {path} failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- the whole benchmark ------------------------------------------------------------


def inputs(txt_sizes: list[float], pdf_pages: int) -> list[tuple[str, Path | None]]:
    """(case name, file) for every case, generating missing files into benchmarks/out/."""
    folder = common.OUT_DIR / "memory"
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[tuple[str, Path | None]] = [("baseline", None)]
    cases.append(("txt_tiny", make_txt(folder / "tiny.txt", TINY_BYTES)))
    for size in txt_sizes:
        cases.append((f"txt_{size:g}mb", make_txt(folder / f"text_{size:g}mb.txt", int(size * MB))))
    if pdf_pages:
        cases.append((f"pdf_{pdf_pages}p", make_pdf(folder / f"pages_{pdf_pages}.pdf", pdf_pages)))
    return cases


def run_cases(cases: list[tuple[str, Path | None]], store: str, work: Path) -> list[dict]:
    """Every case with one store kind, each in its own process and data dir."""
    rows: list[dict[str, Any]] = []
    for name, path in cases:
        row = measure_case(path, work / f"{store}-{name}", store)
        size_mb = round(path.stat().st_size / MB, 2) if path else 0.0
        rows.append({"case": name, "store": store, "file_mb": size_mb, **row})
    baseline = rows[0]["peak_rss_mb"]
    for row in rows:
        row["peak_minus_baseline_mb"] = round(row["peak_rss_mb"] - baseline, 1)
        if row["chunks"] and row["seconds"]:
            row["chunks_per_s"] = round(row["chunks"] / row["seconds"], 1)
    return rows


def main() -> None:
    """Generate inputs, run every case per store, print the table."""
    args = parse_args()
    if args.child:
        print(json.dumps(run_child(args.file, args.data_dir, args.store)))
        return
    sizes = [float(s) for s in args.txt_sizes.split(",") if s.strip()]
    started = time.perf_counter()
    cases = inputs(sizes, args.pdf_pages)
    generated = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="kb-bench-mem-", dir=args.work_dir) as tmp:
        rows = [row for store in args.stores.split(",")
                for row in run_cases(cases, store.strip(), Path(tmp))]
    result = {"embedder": "fake-minilm (real tokenizer, hashed vectors)", "cases": rows,
              "generate_inputs_s": round(generated, 1),
              "total_s": round(time.perf_counter() - started, 1)}
    common.emit(result, args.out)


if __name__ == "__main__":
    main()
