"""Shared by the OpenAI-compatible clients (embeddings, chat): errors and model discovery."""

from __future__ import annotations

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
