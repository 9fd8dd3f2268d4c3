"""`kb eval`: index a BEIR corpus through the real pipeline, then score retrieval."""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from app.factory import open_knowledge_base
from app.service import KnowledgeBase
from app.settings import Settings
from ingest.pipeline import FAILED
from retrieval.errors import KbError
from retrieval.evaluation import Dataset, Ranking, evaluate, load_dataset
from retrieval.search import HYBRID, MODES
from retrieval.types import Hit

CHUNKS_PER_DOCUMENT_DEPTH = 4  # chunk hits fetched per document wanted (Recall@100)
RERANKED = "hybrid+rerank"  # the row kb eval adds when a reranker is configured


def run_eval(
    settings: Settings, root: Path, split: str = "train", modes: tuple[str, ...] = MODES
) -> dict[str, Any]:
    """nDCG@10, Recall@100, MRR@10 of each search mode on the data set at ``root``."""
    try:
        dataset = load_dataset(root, split)
    except FileNotFoundError as exc:
        raise KbError(str(exc)) from exc
    data_dir = settings.data_dir.expanduser().resolve() / "eval" / root.resolve().name
    kb = open_knowledge_base(settings.model_copy(update={"data_dir": data_dir}))
    try:
        started = time.perf_counter()
        ingested = index_corpus(kb, dataset)
        seconds = time.perf_counter() - started
        results = {mode: _score_mode(kb, dataset, mode) for mode in modes}
        if kb.reranker is not None and HYBRID in modes:
            results[RERANKED] = _score_mode(kb, dataset, HYBRID, rerank=True)
    finally:
        kb.close()
    return {"modes": results, "queries": len(dataset.queries), "documents": ingested,
            "index_seconds": round(seconds, 1)}


def _score_mode(
    kb: KnowledgeBase, dataset: Dataset, mode: str, rerank: bool = False
) -> dict[str, float]:
    label = RERANKED if rerank else mode
    with tqdm(total=len(dataset.queries), desc=label, unit="q", file=sys.stderr) as bar:
        scores = evaluate(
            dataset, lambda q: rank_documents(kb, q, 100, mode, rerank), bar.update
        )
    return {name: value for name, value in scores.items() if name != "queries"}


def index_corpus(kb: KnowledgeBase, dataset: Dataset) -> int:
    """Write each corpus entry as ``<id>.txt`` and ingest them; unchanged ones are skipped.

    A data set with a ``files`` folder is ingested from the files there instead,
    each named ``<id>.<extension>`` (e.g. the corpus rendered as scanned PDFs).
    """
    files = dataset.root / "files"
    with tempfile.TemporaryDirectory(dir=kb.data_dir) as tmp:
        if files.is_dir():
            sources = [kb.upload_source("eval", path.stem, path.name, path, None)
                       for path in sorted(files.iterdir()) if path.is_file()]
        else:
            sources = []
            for doc_id, text in dataset.corpus():
                path = Path(tmp) / f"{doc_id}.txt"
                path.write_text(text, encoding="utf-8")
                sources.append(kb.upload_source("eval", doc_id, path.name, path, None))
        with tqdm(total=len(sources), desc="index", unit="doc", file=sys.stderr) as bar:
            outcomes = kb.ingest(sources, lambda _: bar.update())
    failed = [o for o in outcomes if o.status == FAILED]
    if failed:
        print(f"warning: {len(failed)} corpus documents failed, e.g. {failed[0].source}: "
              f"{failed[0].error}", file=sys.stderr)
    return len(outcomes) - len(failed)


def rank_documents(
    kb: KnowledgeBase, query: str, depth: int, mode: str = HYBRID, rerank: bool = False
) -> Ranking:
    """Corpus ids best first: each document scores as its best chunk."""
    hits = kb.search(query, depth * CHUNKS_PER_DOCUMENT_DEPTH, mode=mode, rerank=rerank)
    return documents(hits, depth)


def documents(hits: Iterable[Hit], depth: int) -> Ranking:
    """The first ``depth`` corpus ids (file stems) of ``hits``, each at its best chunk."""
    ranking: list[str] = []
    seen: set[str] = set()
    for hit in hits:
        doc_id = Path(hit.source).stem
        if doc_id not in seen:
            seen.add(doc_id)
            ranking.append(doc_id)
    return ranking[:depth]
