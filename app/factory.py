"""Build the service from settings: the one place besides the CLI that reads them."""

from __future__ import annotations

import os

from pydantic import SecretStr

from app.service import KnowledgeBase
from app.settings import MB, Settings
from ingest.chunking import ChunkSettings
from ingest.loaders import Limits
from ingest.workers import ParseBudget, ParserPool
from retrieval.chat import make_chat_model
from retrieval.embedders import Embedder, make_embedder
from retrieval.fusion import Fusion
from retrieval.rerank import make_reranker
from retrieval.stores import open_backend


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value else None


def embedder_from(settings: Settings) -> Embedder:
    """The embedder the settings ask for: a server's, or the in-process model."""
    return make_embedder(
        settings.embedding_url, settings.embedding_model,
        dimensions=settings.embedding_dimensions, query_instruction=settings.query_instruction,
        api_key=_secret(settings.embedding_api_key), tokenizer=settings.tokenizer,
        runtime=settings.embedding_runtime,
        cache=settings.model_cache.expanduser() if settings.model_cache else None,
    )


def open_knowledge_base(settings: Settings) -> KnowledgeBase:
    """Build the service from settings (the only place besides the CLI that reads them)."""
    embedder = embedder_from(settings)
    data_dir = settings.data_dir.expanduser().resolve()
    backend = open_backend(
        settings.store, data_dir, chroma_url=settings.chroma_url,
        milvus_uri=settings.milvus_uri, milvus_token=_secret(settings.milvus_token),
    )
    limits = Limits(
        max_file_bytes=settings.max_file_bytes,
        max_docx_uncompressed_bytes=int(settings.max_docx_uncompressed_mb * MB),
        max_docx_elements=settings.max_docx_elements,
        max_docx_depth=settings.max_docx_depth,
        max_pages=settings.max_pages,
        max_chars=settings.max_chars,
    )
    parser = ParserPool(
        settings.parse_workers or os.cpu_count() or 1,
        ParseBudget(settings.parse_cpu_seconds, settings.parse_memory_mb),
        settings.ocr_settings,
    )
    chunking = ChunkSettings(tokens=settings.chunk_tokens, overlap=settings.chunk_overlap)
    llm = make_chat_model(settings.llm_url, settings.llm_model, _secret(settings.llm_api_key))
    reranker = make_reranker(
        settings.rerank_url, settings.rerank_model, _secret(settings.rerank_api_key),
        settings.rerank_timeout,
    )
    fusion = Fusion(settings.dense_weight, settings.uncovered_dense_weight,
                    settings.covered_scripts(embedder.name))
    return KnowledgeBase(
        data_dir=data_dir, embedder=embedder, backend=backend, limits=limits,
        chunking=chunking, batch_size=settings.embed_batch_size, llm=llm,
        min_score=settings.min_score, fusion=fusion, reranker=reranker,
        rerank_top_n=settings.rerank_top_n, owns_clients=True, parser=parser,
        piece_tokens=settings.piece_tokens(embedder.name),
    )
