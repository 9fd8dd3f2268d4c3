"""The embedder protocol and what every implementation shares (query format, tokens)."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def format_query(instruction: str | None, query: str) -> str:
    """Qwen3-style instruction prefix for queries; documents get none."""
    if not instruction:
        return query
    return f"Instruct: {instruction}\nQuery:{query}"


class Embedder(ABC):
    """An embedding model: documents and queries in, unit vectors out."""

    name: str
    dimension: int
    max_tokens: int  # longest input, in the model's tokens, special tokens included
    max_concurrency: int = 1  # batches that may be in flight at once
    query_instruction: str | None = None
    runtime: str = ""  # how the model runs, when that changes its vectors (e.g. "onnx-int8")
    # The tokenizer.json that count_tokens uses, when it is a file on this host (parser
    # workers can then count tokens, and chunk, themselves).
    tokenizer_path: Path | None = None

    @property
    def embedding_id(self) -> str:
        """What the vectors depend on: model, runtime and size; an index keeps one."""
        runtime = f"+{self.runtime}" if self.runtime else ""
        return f"{self.name}{runtime}:{self.dimension}"

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts as they are; returns float32 unit vectors, one row per text."""

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Number of model tokens in ``text``, without special tokens."""

    @property
    def special_tokens(self) -> int:
        """Tokens the model adds around every input (e.g. [CLS] and [SEP])."""
        return 2

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Embed document chunks (no instruction)."""
        return self.embed(texts)

    def embed_query(self, query: str) -> np.ndarray:
        """Embed one search query, with the query instruction when configured."""
        return self.embed([format_query(self.query_instruction, query)])[0]

    def queue_documents(self, texts: Sequence[str]) -> Queued:
        """``embed_documents``, queued now where the embedder keeps a queue of its own, so
        a batch waits behind the one being embedded, not behind whoever would wait for it;
        ``wait()`` gives the vectors. By default the work starts at ``wait()``."""
        return Queued(lambda: self.embed_documents(texts))

    def close(self) -> None:  # noqa: B027 - optional: most embedders hold nothing
        """Stop background threads and release connections (nothing by default)."""


class Queued:
    """Vectors on their way: ``wait()`` for them; ``cancel()`` drops work not started."""

    def __init__(self, wait: Callable[[], np.ndarray],
                 cancel: Callable[[], None] = lambda: None) -> None:
        self.wait, self.cancel = wait, cancel


def tokenizer_file(path: Path) -> Path:
    """The tokenizer.json of a model folder, or ``path`` itself when it is that file."""
    return path / "tokenizer.json" if path.is_dir() else path


def fast_tokenizer(path: Path) -> Callable[[str], int]:
    """A cached token counter; the splitter asks for the same words again and again."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file(path)))
    tokenizer.no_truncation()
    tokenizer.no_padding()

    @functools.lru_cache(maxsize=65536)
    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    return count


