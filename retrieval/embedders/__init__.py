"""Embedders: turn texts into unit-length vectors.

``Embedder`` is the one protocol; the pipeline batches on top of it. An
implementation may run in-process (``LocalEmbedder``) or call a server; it
says how many batches it can take at once (``max_concurrency``) so the
pipeline can keep a remote server busy, and how to count tokens so chunks
never exceed what the model accepts.
"""

from __future__ import annotations

from pathlib import Path

from retrieval.embedders.base import (
    DEFAULT_MODEL,
    Embedder,
    Queued,
    fast_tokenizer,
    format_query,
    tokenizer_file,
)
from retrieval.embedders.local import LocalEmbedder, resolve_local_model
from retrieval.embedders.remote import OpenAIEmbedder
from retrieval.errors import ConfigurationError

__all__ = [
    "DEFAULT_MODEL", "Embedder", "LocalEmbedder", "OpenAIEmbedder", "Queued", "fast_tokenizer",
    "format_query", "make_embedder", "resolve_local_model", "tokenizer_file",
]


def make_embedder(
    url: str | None,
    model: str | None,
    *,
    dimensions: int | None = None,
    query_instruction: str | None = None,
    api_key: str | None = None,
    tokenizer: str | None = None,
    runtime: str = "onnx",
    cache: Path | None = None,
) -> Embedder:
    """Choose the embedder from settings: servers when ``url`` is set, else in-process.

    ``url`` may list several replicas separated by commas; they share the load.
    ``runtime`` (onnx or torch) and ``cache`` (exported models) apply to the local model.
    """
    if url:
        urls = [u.strip() for u in url.split(",") if u.strip()]
        return OpenAIEmbedder(
            urls, model or DEFAULT_MODEL, dimensions=dimensions,
            query_instruction=query_instruction, api_key=api_key, tokenizer=tokenizer,
        )
    if dimensions:
        raise ConfigurationError(
            "KB_EMBEDDING_DIMENSIONS applies to an embedding server (KB_EMBEDDING_URL); "
            "unset it for the in-process model"
        )
    return LocalEmbedder(model, query_instruction=query_instruction, runtime=runtime, cache=cache)
