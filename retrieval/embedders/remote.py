"""Embeddings from OpenAI-compatible servers (vLLM), one or several replicas.

A call to ``embed`` is cut into requests by count and token budget; up to
``max_concurrency`` requests are in flight at once, spread over the replicas,
so one ingest keeps every server busy without flooding any. Connection
errors, 429 and 5xx are retried with backoff on the next replica; a 400 for an
over-long input is retried once with ``truncate_prompt_tokens`` (the chunker
sizes chunks to fit, so this only happens when the tokenizer used for sizing
differs from the server's). A server that stays down raises
``UpstreamUnavailable`` naming its URL.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from retrieval.embedders.base import Embedder, fast_tokenizer, tokenizer_file
from retrieval.errors import ConfigurationError, UpstreamUnavailable
from retrieval.openai_http import RetriesExhausted, check_status, post_retrying, served_model

log = logging.getLogger(__name__)

RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)


class OpenAIEmbedder(Embedder):
    """``POST {url}/embeddings`` on one or more servers serving the same model."""

    def __init__(
        self,
        urls: Sequence[str],
        model: str,
        *,
        dimensions: int | None = None,
        query_instruction: str | None = None,
        api_key: str | None = None,
        tokenizer: str | Path | None = None,
        max_batch_items: int = 32,
        max_batch_tokens: int = 16384,
        requests_per_server: int = 2,
        timeout: float = 120.0,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not urls:
            raise ConfigurationError("KB_EMBEDDING_URL is empty")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.urls = [u.rstrip("/") for u in urls]
        self._clients = [
            httpx.Client(base_url=u, headers=headers, timeout=timeout, transport=transport)
            for u in self.urls
        ]
        self._next = itertools.cycle(range(len(self._clients)))
        self.name, self.dimensions, self.query_instruction = model, dimensions, query_instruction
        self.max_batch_items, self.max_batch_tokens = max_batch_items, max_batch_tokens
        self.retry_delays = tuple(retry_delays)
        self.max_concurrency = requests_per_server * len(self._clients)
        self._pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="kb-embed")
        info = served_model(
            self._clients[0],
            self.urls[0],
            model,
            "embedding server",
            "KB_EMBEDDING_URL",
            "KB_EMBEDDING_MODEL",
        )
        self.max_tokens = int(info.get("max_model_len") or 512)
        self.tokenizer_path = _local_tokenizer(tokenizer, info)
        self._count = (
            fast_tokenizer(self.tokenizer_path) if self.tokenizer_path is not None
            else functools.lru_cache(maxsize=65536)(self._remote_count)
        )
        self.dimension = len(self._request(["dimension probe"])[0])

    def close(self) -> None:
        """Close connections and the request pool."""
        self._pool.shutdown(wait=False)
        for client in self._clients:
            client.close()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed in concurrent requests; rows come back in input order, unit length."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        batches = self._batches(texts)
        parts = list(self._pool.map(self._request, batches))
        vectors = np.asarray([v for part in parts for v in part], dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def count_tokens(self, text: str) -> int:
        """Tokens of the served model (local tokenizer when available, else the server)."""
        return self._count(text)

    def _batches(self, texts: Sequence[str]) -> list[list[str]]:
        """Cut by item count and an estimated token budget (4 characters a token)."""
        batches: list[list[str]] = [[]]
        budget = 0
        for text in texts:
            cost = min(len(text) // 4 + 1, self.max_tokens)
            if batches[-1] and (
                len(batches[-1]) >= self.max_batch_items or budget + cost > self.max_batch_tokens
            ):
                batches.append([])
                budget = 0
            batches[-1].append(text)
            budget += cost
        return batches

    def _request(self, texts: list[str]) -> list[list[float]]:
        body: dict[str, Any] = {"model": self.name, "input": texts}
        if self.dimensions:
            body["dimensions"] = self.dimensions
        response = self._post("/embeddings", body)
        if response.status_code == 400 and "maximum context length" in response.text:
            log.warning("input over %d tokens: retrying with truncation", self.max_tokens)
            response = self._post("/embeddings", {**body, "truncate_prompt_tokens": -1})
        check_status(response, "embedding server", "KB_EMBEDDING_MODEL")
        rows = sorted(response.json()["data"], key=lambda row: row["index"])
        return [row["embedding"] for row in rows]

    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """POST with retries over the replicas; raise UpstreamUnavailable when all fail."""
        try:
            return post_retrying(
                lambda: self._clients[next(self._next)], path, body, self.retry_delays
            )
        except RetriesExhausted as exc:
            raise UpstreamUnavailable(
                f"embedding server unreachable at {', '.join(self.urls)} ({exc}); "
                "check that vLLM is running and KB_EMBEDDING_URL"
            ) from None

    def _remote_count(self, text: str) -> int:
        root = self.urls[0].removesuffix("/v1")
        body = {"model": self.name, "prompt": text, "add_special_tokens": False}
        response = self._clients[0].post(f"{root}/tokenize", json=body)
        check_status(response, "embedding server", "KB_EMBEDDING_MODEL")
        return int(response.json()["count"])


def _local_tokenizer(tokenizer: str | Path | None, info: dict[str, Any]) -> Path | None:
    """The tokenizer.json configured, or of the model folder when it is on this host;
    ``None``: tokens are counted by the server."""
    for candidate in (tokenizer, info.get("root")):
        if candidate and tokenizer_file(Path(candidate)).is_file():
            return tokenizer_file(Path(candidate))
    if tokenizer:
        raise ConfigurationError(f"KB_TOKENIZER={tokenizer}: no tokenizer.json there")
    log.warning("no local tokenizer: counting tokens through the server (slower); set KB_TOKENIZER")
    return None
