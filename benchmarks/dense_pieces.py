"""Dense piece sizes, measured offline on a ``kb eval`` index.

all-MiniLM-L6-v2 was trained on inputs of at most 128 word pieces, and kb's
chunks are 256 tokens. This script embeds every stored chunk again as pieces
of ``--piece-tokens`` (``ingest.pieces``, as the pipeline cuts them), scores a
chunk by its best piece, and fuses that dense leg with kb's own lexical leg
through kb's own fusion, at the depths ``kb eval`` uses. The rows it prints
beside the index's own dense and hybrid figures (``index``, through ``kb
eval``'s ranking) say what that piece size buys over what the index holds,
and what embedding the pieces costs against embedding the chunks whole (the
same embedder, timed in the same run). Nothing is written to the index.

The data dir is a ``kb eval`` one (``KB_DATA_DIR`` of an earlier ``kb eval``
run); a corpus not indexed there yet is ingested first. To compare with one
vector per chunk, build it with ``KB_DENSE_PIECE_TOKENS=0``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from common import SCIFACT, embed_in_slices, emit, repo_path

from app.evaluate import CHUNKS_PER_DOCUMENT_DEPTH, documents, index_corpus, rank_documents
from app.factory import open_knowledge_base
from app.service import KnowledgeBase
from app.settings import Settings
from ingest.pieces import PieceCutter
from retrieval.evaluation import Dataset, evaluate, load_dataset
from retrieval.types import Chunk, Hit

DEPTH = 100  # documents ranked per query, as kb eval
CANDIDATES = DEPTH * CHUNKS_PER_DOCUMENT_DEPTH  # chunk hits per leg, as kb eval


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default=str(SCIFACT))
    parser.add_argument("--split", default="train")
    parser.add_argument("--data-dir", type=Path, required=True,
                        help="KB_DATA_DIR of a kb eval run (the index is read, not changed)")
    parser.add_argument("--piece-tokens", type=int, default=128,
                        help="piece size in model tokens, title included")
    parser.add_argument("--weights", default="0.3,0.4,0.5", help="dense weights for hybrid")
    parser.add_argument("--out", type=Path)
    return parser.parse_args()


class PieceLeg:
    """The dense leg over piece vectors: a chunk scores as its best piece."""

    def __init__(self, chunks: list[Chunk], owner: np.ndarray, vectors: np.ndarray) -> None:
        self.chunks, self.owner, self.vectors = chunks, owner, vectors

    def hits(self, query_vector: np.ndarray, k: int) -> list[Hit]:
        best = np.full(len(self.chunks), -1.0, dtype=np.float32)
        np.maximum.at(best, self.owner, self.vectors @ query_vector)
        top = np.argsort(-best)[:k]
        return [_hit(self.chunks[i], float(best[i])) for i in top]


def _hit(chunk: Chunk, score: float) -> Hit:
    return Hit(document_id=chunk.document_id, source=chunk.source,
               chunk_index=chunk.chunk_index, text=chunk.text, score=score,
               generation=chunk.generation)


def product_ranker(kb: KnowledgeBase, mode: str) -> Callable[[str], list[str]]:
    """``kb eval``'s own ranking, of the vectors the index holds, in ``mode``."""
    return lambda query: rank_documents(kb, query, DEPTH, mode)


def scored(dataset: Dataset, rank: Callable[[str], list[str]]) -> dict[str, float]:
    return {name: round(value, 4) for name, value in evaluate(dataset, rank).items()
            if name != "queries"}


def main() -> None:
    args = parse_args()
    root = repo_path(args.dataset)
    dataset = load_dataset(root, args.split)
    data_dir = args.data_dir.expanduser().resolve() / "eval" / root.resolve().name
    kb = open_knowledge_base(Settings(data_dir=data_dir))
    try:
        index_corpus(kb, dataset)
        chunks = [c for page in kb.store.chunks() for c in page]
        owner: list[int] = []
        texts: list[str] = []
        cutter = PieceCutter.of(kb.embedder, args.piece_tokens)
        for i, chunk in enumerate(chunks):
            for text in cutter.texts(chunk):
                owner.append(i)
                texts.append(text)
        piece_vectors, piece_seconds = embed_in_slices(kb.embedder, texts, kb.batch_size)
        _, whole_seconds = embed_in_slices(
            kb.embedder, [c.indexed_text for c in chunks], kb.batch_size)
        leg = PieceLeg(chunks, np.asarray(owner), piece_vectors)
        queries: dict[str, tuple[np.ndarray, list[Hit]]] = {}

        def legs(query: str) -> tuple[np.ndarray, list[Hit]]:
            if query not in queries:
                queries[query] = (kb.embedder.embed_query(query),
                                  kb.store.lexical_query(query, CANDIDATES))
            return queries[query]

        def piece_ranker(weight: float | None) -> Callable[[str], list[str]]:
            fusion = replace(kb.fusion, dense_weight=weight or 0.0)

            def rank(query: str) -> list[str]:
                vector, lexical = legs(query)
                dense = leg.hits(vector, CANDIDATES)
                return documents(dense if weight is None else
                                 fusion.fuse(query, dense, lexical), DEPTH)
            return rank

        weights = [float(w) for w in args.weights.split(",")]
        result: dict[str, Any] = {
            "dataset": root.name, "split": args.split, "chunks": len(chunks),
            "pieces": len(texts), "piece_tokens": args.piece_tokens,
            "embed_seconds": {"whole_chunks": round(whole_seconds, 1),
                              "pieces": round(piece_seconds, 1)},
            "embed_ratio_pieces_vs_whole": round(piece_seconds / whole_seconds, 3),
            "product_dense_weight": kb.fusion.dense_weight,
            "index": {
                mode: scored(dataset, product_ranker(kb, mode))
                for mode in ("dense", "lexical", "hybrid")},
            "best_piece": {"dense": scored(dataset, piece_ranker(None))},
        }
        product = kb.fusion
        for weight in weights:
            kb.fusion = replace(product, dense_weight=weight)
            result["index"][f"hybrid w={weight}"] = scored(
                dataset, product_ranker(kb, "hybrid"))
            result["best_piece"][f"hybrid w={weight}"] = scored(dataset, piece_ranker(weight))
        kb.fusion = product
        emit(result, str(args.out) if args.out else None)
    finally:
        kb.close()


if __name__ == "__main__":
    main()
