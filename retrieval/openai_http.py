"""Shared by the OpenAI-compatible clients (embeddings, chat, rerank): errors, retries, models."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from retrieval.errors import ConfigurationError, UpstreamUnavailable


def check_status(response: httpx.Response, what: str, model_setting: str) -> None:
    """Raise for an error answer: 4xx means our request or settings are wrong, 5xx the server."""
    if response.status_code < 400:
        return
    message = (
        f"{what} at {response.request.url} answered HTTP {response.status_code}: "
        f"{response.text[:300]}"
    )
    if response.status_code < 500:
        raise ConfigurationError(f"{message}; check {model_setting} and the key")
    raise UpstreamUnavailable(message)


def served_model(
    client: httpx.Client, url: str, model: str, what: str, url_setting: str, model_setting: str
) -> dict[str, Any]:
    """The server's ``/models`` entry for ``model`` (with ``max_model_len`` on vLLM)."""
    try:
        response = client.get("/models")
    except httpx.TransportError as exc:
        raise UpstreamUnavailable(
            f"{what} unreachable at {url}: {exc}; check {url_setting}"
        ) from exc
    check_status(response, what, model_setting)
    models = {m["id"]: m for m in response.json().get("data", [])}
    if model not in models:
        raise ConfigurationError(
            f"the {what} at {url} does not serve {model!r} "
            f"(it serves {', '.join(models) or 'nothing'}); set {model_setting}"
        )
    return dict(models[model])


RETRY_STATUS = {429, 500, 502, 503, 504}


class RetriesExhausted(Exception):
    """Every attempt failed; the message is the last failure."""


def post_retrying(
    next_client: Callable[[], httpx.Client], path: str, body: dict[str, Any],
    delays: Sequence[float],
) -> httpx.Response:
    """POST, retrying connection errors, 429 and 5xx after each delay (on the next client)."""
    error = ""
    for delay in (*delays, None):
        try:
            response = next_client().post(path, json=body)
            if response.status_code not in RETRY_STATUS:
                return response
            error = f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.TransportError as exc:
            error = f"{type(exc).__name__}: {exc}"
        if delay is not None:
            time.sleep(delay)
    raise RetriesExhausted(error)
