"""Plain dense retrieval over whole abstracts: the quality baseline for `kb eval`.

Encodes every corpus entry whole (the model truncates at 256 tokens), ranks by
cosine similarity, and scores with the same metric code as `kb eval`, so the
two figures compare chunked pipeline retrieval with the raw model on the same
queries.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from common import SCIFACT, repo_path
from sentence_transformers import SentenceTransformer

from retrieval.embedders import resolve_local_model
from retrieval.evaluation import evaluate, load_dataset


def main() -> None:
    """Encode the corpus whole, rank, print the scores as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default=str(SCIFACT))
    parser.add_argument("--split", default="train")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    dataset = load_dataset(repo_path(args.dataset), args.split)
    ids, texts = zip(*dataset.corpus(), strict=True)
    model = SentenceTransformer(str(resolve_local_model(None)), device="cpu")
    started = time.perf_counter()
    corpus = model.encode(list(texts), batch_size=32, normalize_embeddings=True)
    seconds = time.perf_counter() - started

    def rank(query: str) -> list[str]:
        scores = corpus @ model.encode([query], normalize_embeddings=True)[0]
        return [ids[i] for i in np.argsort(-scores)[:100]]

    result = {**evaluate(dataset, rank), "encode_seconds": round(seconds, 1)}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
