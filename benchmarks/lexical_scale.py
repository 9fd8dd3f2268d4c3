"""The lexical leg at scale: kb's tantivy index over many synthetic chunks.

Chunks of ``--words`` words drawn from a Zipf-distributed vocabulary of
pseudo-words (so a few terms are very common, as in real text) go through
``LexicalIndex.add`` in batches with a commit each, exactly as ingest writes
them. Reported: index throughput, disk size, query p50/p95 for 2-4 rare-ish
terms and for queries that include one of the most common terms, and the
time to replace 1,000 documents (delete a generation, add the new one,
commit), as a re-ingest does. Target: query p95 <= 20 ms.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from retrieval.lexical import LexicalIndex  # noqa: E402
from retrieval.types import Chunk  # noqa: E402

CHUNKS_PER_DOCUMENT = 10


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=1_000_000)
    parser.add_argument("--words", type=int, default=100, help="words per chunk")
    parser.add_argument("--vocabulary", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000, help="chunks per commit")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--out", help="also write the JSON result to this file")
    return parser.parse_args()


def vocabulary(size: int, rng: random.Random) -> list[str]:
    """Pronounceable pseudo-words, none a stop word."""
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words)


class Corpus:
    """Synthetic chunk texts with Zipf-distributed word frequencies."""

    def __init__(self, words: list[str], per_chunk: int, seed: int = 7) -> None:
        self.words, self.per_chunk = np.asarray(words), per_chunk
        ranks = np.arange(1, len(words) + 1)
        self.p = (1 / ranks) / (1 / ranks).sum()
        self.rng = np.random.default_rng(seed)

    def texts(self, n: int) -> list[str]:
        """``n`` chunk texts."""
        picks = self.rng.choice(len(self.words), size=(n, self.per_chunk), p=self.p)
        return [" ".join(row) for row in self.words[picks]]


def chunks(texts: list[str], first: int, generation: int = 1) -> list[Chunk]:
    """Chunks numbered from ``first``, ten to a document."""
    out = []
    for i, text in enumerate(texts, first):
        doc = f"doc{i // CHUNKS_PER_DOCUMENT}"
        out.append(Chunk(doc, f"{doc}.txt", i % CHUNKS_PER_DOCUMENT, text, 0, len(text),
                         generation=generation))
    return out


def build(index: LexicalIndex, corpus: Corpus, total: int, batch: int) -> float:
    """Seconds to add and commit ``total`` chunks."""
    started = time.perf_counter()
    for first in range(0, total, batch):
        index.add(chunks(corpus.texts(min(batch, total - first)), first))
        index.commit()
        done = first + batch
        if done % (batch * 10) == 0:
            rate = done / (time.perf_counter() - started)
            print(f"  {done:,} chunks, {rate:,.0f}/s", file=sys.stderr)
    return time.perf_counter() - started


def timed_queries(index: LexicalIndex, queries: list[str]) -> dict[str, float]:
    """p50/p95/p99 milliseconds of ``query(k=10)``."""
    for q in queries[:20]:
        index.query(q, 10)
    times = []
    for q in queries:
        started = time.perf_counter()
        index.query(q, 10)
        times.append((time.perf_counter() - started) * 1000)
    p50, p95, p99 = np.percentile(times, [50, 95, 99])
    return {"p50_ms": round(float(p50), 2), "p95_ms": round(float(p95), 2),
            "p99_ms": round(float(p99), 2)}


def replace_documents(index: LexicalIndex, corpus: Corpus, documents: int) -> float:
    """Seconds to swap ``documents`` documents to a new generation, as a re-ingest does it.

    New chunks go in batches of 256 with a commit each (the pipeline's batch);
    then the old generations are deleted with one commit (the committer's
    ``settle`` after a batch).
    """
    started = time.perf_counter()
    fresh = chunks(corpus.texts(documents * CHUNKS_PER_DOCUMENT), 0, generation=2)
    for first in range(0, len(fresh), 256):
        index.add(fresh[first : first + 256])
        index.commit()
    index.delete_many([(f"doc{d}", 1) for d in range(documents)])
    return time.perf_counter() - started


def folder_mb(path: Path) -> float:
    """Disk used under ``path``."""
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 1)


def main() -> None:
    """Build, query, replace; print JSON."""
    args = parse_args()
    rng = random.Random(1)
    words = vocabulary(args.vocabulary, rng)
    corpus = Corpus(words, args.words)
    work = Path(tempfile.mkdtemp(prefix="kb-bench-lexical-"))
    try:
        index = LexicalIndex(work / "lexical")
        seconds = build(index, corpus, args.chunks, args.batch)
        rare = [" ".join(rng.sample(words[1000:50_000], rng.randint(2, 4)))
                for _ in range(args.queries)]
        common_term = [f"{words[0]} " + q for q in rare]
        result = {
            "chunks": index.count(), "words_per_chunk": args.words,
            "index_seconds": round(seconds, 1),
            "index_chunks_per_s": round(args.chunks / seconds),
            "disk_mb": folder_mb(work / "lexical"),
            "query": timed_queries(index, rare),
            "query_with_most_common_term": timed_queries(index, common_term),
            "replace_1000_documents_s": round(replace_documents(index, corpus, 1000), 2),
            "chunks_after_replace": index.count(),
        }
        result["meets_target"] = max(result["query"]["p95_ms"],
                                     result["query_with_most_common_term"]["p95_ms"]) <= 20
        index.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    import json

    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
