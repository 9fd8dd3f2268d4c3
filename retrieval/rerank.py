"""Rerank: an optional last stage that re-scores the top candidates with a cross-encoder.

``Reranker`` is the protocol; ``VllmReranker`` calls vLLM's ``POST /rerank``
(Qwen3-Reranker, bge-reranker, any cross-encoder it serves). Reranking is an
improvement, not a requirement: ``rerank`` never raises for a reranker that
is down, slow or wrong; it keeps the fused order and says why in a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol

import httpx

from retrieval.errors import KbError, UpstreamUnavailable
from retrieval.openai_http import RetriesExhausted, check_status, post_retrying
from retrieval.types import Hit

log = logging.getLogger(__name__)

RERANK = "rerank"
RETRY_DELAYS = (0.2,)  # one quick retry: a search must not wait long for an optional stage


class Reranker(Protocol):
    """Scores how well each document answers the query (higher is better)."""

    name: str

    def scores(self, query: str, documents: Sequence[str]) -> list[float]:
        """One score per document, in the documents' order."""

    def close(self) -> None:
        """Release connections."""


class VllmReranker:
    """vLLM's rerank API, in batches of ``batch_size`` documents."""

    def __init__(
        self, url: str, model: str, *, api_key: str | None = None, timeout: float = 10.0,
        batch_size: int = 32, transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url, self.name, self.batch_size = url.rstrip("/"), model, batch_size
        self._client = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def scores(self, query: str, documents: Sequence[str]) -> list[float]:
        """Relevance of each document; raises UpstreamUnavailable or ConfigurationError."""
        out: list[float] = []
        for start in range(0, len(documents), self.batch_size):
            out += self._batch(query, list(documents[start : start + self.batch_size]))
        return out

    def _batch(self, query: str, documents: list[str]) -> list[float]:
        body = {"model": self.name, "query": query, "documents": documents,
                "top_n": len(documents)}
        response = self._post(body)
        check_status(response, "rerank server", "KB_RERANK_MODEL")
        scores = [0.0] * len(documents)
        for row in response.json()["results"]:
            scores[int(row["index"])] = float(row["relevance_score"])
        return scores

    def _post(self, body: dict[str, Any]) -> httpx.Response:
        try:
            return post_retrying(lambda: self._client, "/rerank", body, RETRY_DELAYS)
        except RetriesExhausted as exc:
            raise UpstreamUnavailable(
                f"rerank server unreachable at {self.url} ({exc})"
            ) from None


def rerank(
    reranker: Reranker, query: str, hits: list[Hit], top_n: int
) -> tuple[list[Hit], list[str]]:
    """The first ``top_n`` hits re-ordered by the reranker, then the rest; and any warnings."""
    head, tail = hits[:top_n], hits[top_n:]
    if not head:
        return hits, []
    try:
        scores = reranker.scores(query, [h.text for h in head])
    except (KbError, httpx.HTTPError, KeyError, ValueError) as exc:
        log.warning("rerank skipped: %s", exc)
        return hits, [f"rerank skipped, results are in fused order: {exc}"]
    order = sorted(range(len(head)), key=lambda i: -scores[i])
    ranked = [
        replace(head[i], score=scores[i], scores={**head[i].scores, RERANK: scores[i]},
                ranks={**head[i].ranks, RERANK: rank})
        for rank, i in enumerate(order, 1)
    ]
    return ranked + tail, []


def make_reranker(
    url: str | None, model: str | None, api_key: str | None = None, timeout: float = 10.0
) -> Reranker | None:
    """A vLLM reranker when ``url`` is set, else none."""
    if not url:
        return None
    return VllmReranker(url, model or "reranker", api_key=api_key, timeout=timeout)
