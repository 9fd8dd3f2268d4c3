"""The pipeline's own ceiling: ingest with a zero-cost embedder, 1 vs 2 parsing workers.

A GPU embedding server embeds thousands of chunks a second, so on a production
host everything around the embedder sets the pace. This script replaces the
embedder with a hashing one (real tokenizer for chunking, vectors from a hash:
benchmark-only, never in the product) and ingests a mixed corpus (SciFact
abstracts as TXT, plus PDFs and DOCX files made from them) into real Chroma and
the lexical index. Each case runs in a fresh child process so its peak RSS is
its own (children: the parser workers). One run uses all the workers but one
(the last is kept for other users' uploads), so ``--workers 1,3`` compares one
parsing worker with two.

A last child times the stages alone on the same files: parsing and chunking in
one worker (parallel across workers), and filling in the chunks' document fields,
hashing and store writes (in the service process). From those it estimates what
a 16-core host would give.

    .venv/bin/python benchmarks/pipeline_ceiling.py --txt 600 --mix 120 --workers 1,3

Chunks are embedded and written ``KB_EMBED_BATCH_SIZE`` at a time (the product's setting).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402
from benchmarks.parser_pool import write_mix  # noqa: E402

PROJECTED_CORES = 16


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(common.DEFAULT_CORPUS))
    parser.add_argument("--txt", type=int, default=600, help="SciFact abstracts as .txt")
    parser.add_argument("--mix", type=int, default=120, help="PDF + DOCX files (half each)")
    parser.add_argument("--workers", default="1,3", help="parser pool sizes to compare")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", help="also write the JSON result to this file")
    parser.add_argument("--child", nargs=3, metavar=("CASE", "DATA_DIR", "FILES"),
                        help=argparse.SUPPRESS)
    return parser.parse_args()


def open_kb(data_dir: Path, workers: int) -> Any:
    """A KnowledgeBase over the hashing embedder and real Chroma, with ``workers`` parsers."""
    from app.service import KnowledgeBase
    from ingest.chunking import ChunkSettings
    from ingest.loaders import Limits
    from ingest.workers import ParserPool
    from retrieval.stores import open_backend

    return KnowledgeBase(
        data_dir=data_dir, embedder=common.FakeEmbedder(),
        backend=open_backend("chroma", data_dir), limits=Limits(),
        chunking=ChunkSettings(), parser=ParserPool(workers), owns_clients=True,
        batch_size=common.bench_settings(data_dir).embed_batch_size,
    )


def children_peak_mb() -> float:
    """The largest peak RSS of any child process that has ended (the parser workers)."""
    return round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)


def ingest_case(workers: int, data_dir: Path, files: list[Path]) -> dict[str, Any]:
    """Time ``kb.ingest`` of every file with ``workers`` parser processes."""
    kb = open_kb(data_dir, workers)
    seconds, outcomes = common.timed_ingest(kb, files)
    chunks = sum(o.chunks for o in outcomes)
    rss = common.peak_rss_mb()
    kb.close()
    return {
        "workers": workers, "files": len(files), "chunks": chunks, "seconds": round(seconds, 2),
        "files_per_s": common.rate(len(files), seconds),
        "chunks_per_s": common.rate(chunks, seconds),
        "peak_rss_mb": rss, "worker_peak_rss_mb": children_peak_mb(),
    }


def stages_case(data_dir: Path, files: list[Path]) -> dict[str, Any]:
    """Each stage alone, on the same files: seconds for all of them."""
    from dataclasses import replace

    import numpy as np

    kb = open_kb(data_dir, 1)
    list(kb.parser.parse(files[-1], files[-1].name, kb.limits))
    start = time.perf_counter()
    chunked = [list(kb.parser.chunks(p, p.name, kb.limits, kb.chunk_plan)) for p in files]
    parse_s = time.perf_counter() - start
    start = time.perf_counter()  # what the service does with the worker's chunks
    chunks = [replace(c, document_id=f"d{i}", generation=1)
              for i, part in enumerate(chunked) for c in part]
    chunk_s = time.perf_counter() - start
    start = time.perf_counter()
    in_service = [list(kb.chunker.chunks(kb.parser.parse(p, p.name, kb.limits), document_id="",
                                         source=p.name, generation=0)) for p in files]
    assert [len(c) for c in in_service] == [len(c) for c in chunked]
    parse_then_chunk_here_s = time.perf_counter() - start
    start = time.perf_counter()
    texts = [c.indexed_text for c in chunks]
    vectors = kb.embedder.embed_documents(texts)
    embed_s = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(0, len(chunks), kb.batch_size):
        kb.store.add(chunks[i : i + kb.batch_size], np.asarray(vectors[i : i + kb.batch_size]))
    store_s = time.perf_counter() - start
    kb.close()
    serial = chunk_s + embed_s + store_s  # in the service process, one file after another
    return {
        "chunks": len(chunks),
        "seconds": {"parse_and_chunk_one_worker": round(parse_s, 2),
                    "chunk_fields": round(chunk_s, 2), "hash_embed": round(embed_s, 2),
                    "store_write": round(store_s, 2),
                    "for_reference_parse_in_worker_then_chunk_in_service": round(
                        parse_then_chunk_here_s, 2)},
        "service_process_seconds": round(serial, 2),
        "projected_chunks_per_s": {
            f"{n}_cores": common.rate(len(chunks), max(serial, parse_s / n))
            for n in (1, 2, PROJECTED_CORES)
        },
    }


def run_child(case: str, data_dir: str, files_list: str) -> None:
    files = [Path(line) for line in Path(files_list).read_text().splitlines()]
    result = stages_case(Path(data_dir), files) if case == "stages" else ingest_case(
        int(case), Path(data_dir), files)
    print(json.dumps(result))


def in_child(case: str, data_dir: Path, files_list: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", case, str(data_dir), str(files_list)],
        check=True, capture_output=True, text=True, env=common.child_env(),
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    args = parse_args()
    if args.child:
        run_child(*args.child)
        return
    counts = [int(n) for n in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="kb-bench-ceiling-") as tmp:
        work = Path(tmp)
        txt = common.write_scifact_files(args.corpus, work / "txt", args.txt)
        mix = write_mix(args.corpus, work / "mix", args.mix)
        files = [f for pair in zip(txt[: len(mix)], mix, strict=True) for f in pair]
        files += txt[len(mix):]  # mixed in, then the rest of the text files
        listing = work / "files.txt"
        listing.write_text("\n".join(str(p) for p in files))
        rounds = []
        for r in range(args.repeats):
            row = {f"workers_{n}": in_child(str(n), work / f"r{r}-w{n}", listing) for n in counts}
            if len(counts) > 1:
                first, last = row[f"workers_{counts[0]}"], row[f"workers_{counts[-1]}"]
                row["speedup"] = round(last["chunks_per_s"] / first["chunks_per_s"], 3)
            rounds.append(row)
        stages = in_child("stages", work / "stages", listing)
    common.emit({
        "embedder": "hashing (real tokenizer, vectors from a hash of the text)",
        "corpus": {"txt": len(txt), "pdf_docx": len(mix)}, "cpu_count": os.cpu_count(),
        "batch_size": common.bench_settings(work).embed_batch_size,
        "rounds": rounds, "stages": stages,
    }, args.out)


if __name__ == "__main__":
    main()
