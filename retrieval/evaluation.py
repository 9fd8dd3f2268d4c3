"""Retrieval evaluation on BEIR-format data sets (corpus.jsonl, queries.jsonl, qrels/*.tsv)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

Ranking = list[str]  # document ids, best first


@dataclass
class Dataset:
    """Queries and their relevance judgements; the corpus is streamed separately."""

    root: Path
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]

    def corpus(self) -> Iterator[tuple[str, str]]:
        """(document id, text) pairs: the title, a blank line, then the text."""
        with (self.root / "corpus.jsonl").open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    title = (row.get("title") or "").strip()
                    body = (row.get("text") or "").strip()
                    yield str(row["_id"]), f"{title}\n\n{body}" if title else body


def load_dataset(root: Path, split: str = "train") -> Dataset:
    """Read a BEIR folder; only queries with judgements for ``split`` are kept."""
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not (root / "corpus.jsonl").is_file() or not qrels_path.is_file():
        raise FileNotFoundError(
            f"{root} is not a BEIR data set: expected corpus.jsonl, queries.jsonl and {qrels_path}"
        )
    qrels: dict[str, dict[str, int]] = {}
    with qrels_path.open(encoding="utf-8") as f:
        for row in csv.reader(f, delimiter="\t"):
            if len(row) >= 3 and row[2].strip().lstrip("-").isdigit():
                qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    queries: dict[str, str] = {}
    with (root / "queries.jsonl").open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                if str(row["_id"]) in qrels:
                    queries[str(row["_id"])] = row["text"]
    return Dataset(root, queries, qrels)


def ndcg_at(ranking: Ranking, relevant: dict[str, int], k: int) -> float:
    """Normalised discounted cumulative gain at ``k`` (graded relevance)."""
    dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranking[:k]))
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranking: Ranking, relevant: dict[str, int], k: int) -> float:
    """Share of the relevant documents found in the top ``k``."""
    wanted = {d for d, g in relevant.items() if g > 0}
    return len(wanted & set(ranking[:k])) / len(wanted) if wanted else 0.0


def mrr_at(ranking: Ranking, relevant: dict[str, int], k: int) -> float:
    """Reciprocal rank of the first relevant document within the top ``k``."""
    for i, d in enumerate(ranking[:k]):
        if relevant.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def evaluate(
    dataset: Dataset,
    rank: Callable[[str], Ranking],
    on_query: Callable[[], None] | None = None,
) -> dict[str, float]:
    """nDCG@10, Recall@100 and MRR@10 averaged over the data set's queries."""
    totals = {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    for qid, text in dataset.queries.items():
        ranking, relevant = rank(text), dataset.qrels[qid]
        totals["ndcg@10"] += ndcg_at(ranking, relevant, 10)
        totals["recall@100"] += recall_at(ranking, relevant, 100)
        totals["mrr@10"] += mrr_at(ranking, relevant, 10)
        if on_query:
            on_query()
    n = max(1, len(dataset.queries))
    return {name: value / n for name, value in totals.items()} | {"queries": len(dataset.queries)}
