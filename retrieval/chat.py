"""Chat models: an OpenAI-compatible server (vLLM) that streams text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Protocol

import httpx

from retrieval.errors import ConfigurationError, UpstreamUnavailable
from retrieval.openai_http import check_status, served_model

Messages = list[dict[str, str]]


class ChatModel(Protocol):
    """Something that turns chat messages into streamed text."""

    name: str
    context_tokens: int  # prompt and answer together

    def stream(self, messages: Messages, *, max_tokens: int) -> Iterator[str]:
        """Pieces of the answer as they are generated."""


class OpenAIChatModel:
    """``POST {url}/chat/completions`` with ``stream: true``, read as server-sent events."""

    def __init__(
        self,
        url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url, self.name = url.rstrip("/"), model
        self._client = httpx.Client(
            base_url=self.url,
            headers=headers,
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=10.0),
        )
        info = served_model(
            self._client, self.url, model, "chat model", "KB_LLM_URL", "KB_LLM_MODEL"
        )
        self.context_tokens = int(info.get("max_model_len") or 4096)

    def stream(self, messages: Messages, *, max_tokens: int) -> Iterator[str]:
        """Yield content deltas; errors become UpstreamUnavailable/ConfigurationError."""
        body = {
            "model": self.name,
            "messages": messages,
            "max_tokens": max_tokens,
            "stream": True,
            "temperature": 0.2,
        }
        try:
            with self._client.stream("POST", "/chat/completions", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    check_status(response, "chat model", "KB_LLM_MODEL")
                for line in response.iter_lines():
                    piece = _delta(line)
                    if piece:
                        yield piece
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(
                f"chat model unreachable at {self.url}: {exc}; check KB_LLM_URL"
            ) from exc


def _delta(line: str) -> str:
    """The text in one SSE line of an OpenAI chat stream ('' for anything else)."""
    if not line.startswith("data:"):
        return ""
    data = line[5:].strip()
    if not data or data == "[DONE]":
        return ""
    choices = json.loads(data).get("choices") or [{}]
    return str((choices[0].get("delta") or {}).get("content") or "")


def make_chat_model(
    url: str | None, model: str | None, api_key: str | None = None
) -> ChatModel | None:
    """The configured chat model, or None for extractive answers."""
    if not url:
        return None
    if not model:
        raise ConfigurationError("KB_LLM_URL is set but KB_LLM_MODEL is not: name the served model")
    return OpenAIChatModel(url, model, api_key=api_key)
