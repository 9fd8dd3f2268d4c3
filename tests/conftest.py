"""Shared fixtures: the real packaged model, loaded once, and knowledge bases in tmp dirs."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from app.service import KnowledgeBase  # noqa: E402
from ingest.chunking import ChunkSettings  # noqa: E402
from ingest.loaders import Limits  # noqa: E402
from retrieval.embedders import Embedder, LocalEmbedder  # noqa: E402
from retrieval.store import ChromaBackend  # noqa: E402

MakeKb = Callable[..., KnowledgeBase]


@pytest.fixture(scope="session")
def embedder() -> LocalEmbedder:
    """The real packaged all-MiniLM-L6-v2, shared by every test (loading takes a second)."""
    return LocalEmbedder()


@pytest.fixture
def make_kb(tmp_path: Path, embedder: LocalEmbedder) -> Iterator[MakeKb]:
    """Open knowledge bases on real embedded Chroma under ``tmp_path``; closed afterwards."""
    opened: list[KnowledgeBase] = []

    def make(
        data_dir: Path | None = None, *, use: Embedder | None = None, limits: Limits | None = None,
        chunking: ChunkSettings | None = None, batch_size: int = 16,
    ) -> KnowledgeBase:
        root = data_dir or tmp_path / "data"
        kb = KnowledgeBase(
            data_dir=root, embedder=use or embedder, backend=ChromaBackend(path=root / "chroma"),
            limits=limits or Limits(), chunking=chunking or ChunkSettings(),
            batch_size=batch_size,
        )
        opened.append(kb)
        return kb

    yield make
    for kb in opened:
        try:
            kb.close()
        except Exception:  # already closed by the test
            pass


def write(path: Path, text: str) -> Path:
    """Write a UTF-8 text file and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
