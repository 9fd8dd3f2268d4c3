"""What only the Milvus store has: its BM25 next to tantivy's, and a switch of store."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.service import KnowledgeBase
from ingest.chunking import ChunkSettings
from ingest.loaders import Limits
from ingest.workers import ParserPool
from retrieval.embedders import Embedder
from retrieval.errors import ConfigurationError
from retrieval.lexical import LexicalIndex
from retrieval.stores import StoreBackend
from retrieval.stores.chroma import ChromaBackend
from retrieval.stores.hybrid import HybridBackend
from retrieval.stores.milvus import MilvusBackend, MilvusStore
from retrieval.types import Chunk
from tests.conftest import write
from tests.ingest.test_pipeline import OCEAN, PARIS, assert_consistent, src
from tests.retrieval.test_lexical import WORDS

TEXTS = [
    "Blue whales are the largest animals that ever lived.",
    "Whales sing songs that carry across whole oceans.",
    "The Eiffel Tower was completed in 1889 for the World's Fair.",
    "Paris hosted the World's Fair several times.",
    "向量数据库支持全文检索和语义检索。",
    "检索增强生成把文档片段交给语言模型。",
    "长城是中国古代的军事防御工程。",
    "Milvus 支持 BM25 全文检索 and dense vectors in one collection.",
]
QUERIES = ["largest whales", "World's Fair Paris", "全文检索", "语言模型", "长城", "BM25 检索"]


@pytest.fixture
def indexes(tmp_path: Path) -> Iterator[tuple[LexicalIndex, MilvusStore]]:
    """An empty tantivy index and an empty milvus-lite collection of 4-d vectors."""
    tantivy = LexicalIndex(tmp_path / "lexical")
    backend = MilvusBackend(str(tmp_path / "milvus.db"))
    try:
        yield tantivy, backend.open("kb_parity", 4)
    finally:
        tantivy.close()
        backend.close()


def test_milvus_bm25_ranks_as_the_tantivy_index_does(
    indexes: tuple[LexicalIndex, MilvusStore],
) -> None:
    """Both lexical legs index the same analysed terms with BM25 (k1 1.2, b 0.75)."""
    tantivy, milvus = indexes
    chunks = [Chunk(f"d{i}", f"d{i}.txt", 0, t, 0, len(t)) for i, t in enumerate(TEXTS)]
    tantivy.add(chunks)
    tantivy.commit()
    milvus.add(chunks, np.eye(len(chunks), 4, dtype=np.float32) + 0.1)
    for query in QUERIES:
        ours = [h.document_id for h in tantivy.query(query, 3)]
        theirs = [h.document_id for h in milvus.lexical_query(query, 3)]
        assert theirs == ours, query


def test_milvus_indexes_each_chunks_neighbourhood_as_tantivy_does(
    indexes: tuple[LexicalIndex, MilvusStore],
) -> None:
    """Chunks written one by one (a document straddling batches) get the same windows."""
    tantivy, milvus = indexes
    chunks = [Chunk("d", "d.txt", i, f"{w} notes", 0, 9) for i, w in enumerate(WORDS)]
    tantivy.add(chunks)
    tantivy.commit()
    for i, c in enumerate(chunks):
        milvus.add([c], np.eye(1, 4, i % 4) + 0.1)
    assert milvus.count() == len(chunks)
    for word in WORDS:
        ours = sorted(h.chunk_index for h in tantivy.query(word, 10))
        assert sorted(h.chunk_index for h in milvus.lexical_query(word, 10)) == ours, word
    # Neighbours written again kept their vectors.
    written = np.concatenate([np.eye(1, 4, i % 4) + 0.1 for i in range(len(chunks))])
    stored = np.concatenate([v for _, v in milvus.stored("d", 1)])
    assert np.allclose(stored, written)


def test_a_collection_made_before_windows_is_named_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = MilvusBackend(str(tmp_path / "milvus.db"))
    try:
        backend.open("kb_new", 4)
        backend.client.create_collection("kb_old", dimension=4)  # no kb.terms property
        with caplog.at_level(logging.WARNING, logger="retrieval.stores.milvus"):
            backend.open("kb_new", 4)
            assert caplog.messages == []
            backend.open("kb_old", 4)
        assert "kb_old predates neighbourhood search" in caplog.text
        assert "kb reindex" in caplog.text
    finally:
        backend.close()


def kb_on(backend: StoreBackend, data: Path, embedder: Embedder, parser: ParserPool
          ) -> KnowledgeBase:
    return KnowledgeBase(data_dir=data, embedder=embedder, backend=backend, limits=Limits(),
                         chunking=ChunkSettings(), parser=parser)


def test_a_change_of_store_is_refused_until_reindex_moves_the_index(
    tmp_path: Path, embedder: Embedder, parser_pool: ParserPool
) -> None:
    data = tmp_path / "data"
    chroma = HybridBackend(ChromaBackend(path=data / "chroma"), data / "lexical")
    kb = kb_on(chroma, data, embedder, parser_pool)
    kb.ingest([src(write(tmp_path / "p.txt", PARIS)), src(write(tmp_path / "o.txt", OCEAN))])
    kb.close()
    chroma.close()
    milvus = MilvusBackend(str(data / "milvus.db"))
    kb = kb_on(milvus, data, embedder, parser_pool)
    try:
        with pytest.raises(ConfigurationError, match="stored in chroma but KB_STORE is now milvus"):
            kb.search("whales", 1)
        kb.reindex()  # from the kept originals
        assert kb.search("largest animals whales", 1)[0].source == "o.txt"
        assert_consistent(kb)
        assert kb.status()["vectors"] == kb.store.count() > 0
    finally:
        kb.close()
        milvus.close()


def test_a_store_without_the_catalogs_chunks_is_refused_not_searched_as_empty(
    tmp_path: Path, embedder: Embedder, parser_pool: ParserPool
) -> None:
    data = tmp_path / "data"
    first = MilvusBackend(str(data / "milvus.db"))
    kb = kb_on(first, data, embedder, parser_pool)
    kb.ingest([src(write(tmp_path / "o.txt", OCEAN))])
    kb.close()
    first.close()
    elsewhere = MilvusBackend(str(tmp_path / "new-server.db"))  # KB_MILVUS_URI moved
    kb = kb_on(elsewhere, data, embedder, parser_pool)
    try:
        with pytest.raises(ConfigurationError, match="holds none"):
            kb.search("whales", 1)
        kb.reindex()
        assert kb.search("whales", 1)[0].source == "o.txt"
        assert_consistent(kb)
    finally:
        kb.close()
        elsewhere.close()
