"""Search the knowledge base."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from app.deps import KbDep, ViewerDep
from retrieval.search import Mode

router = APIRouter(prefix="/v1", tags=["search"])


class SearchRequest(BaseModel):
    """A search query."""

    query: str = Field(min_length=1, max_length=8000)
    k: int = Field(default=10, ge=1, le=100)
    mode: Mode = Field(
        default="hybrid", description="dense, lexical (BM25), or hybrid: both, fused"
    )


class SearchResult(BaseModel):
    """One chunk found, with where it comes from."""

    document_id: str
    source: str
    page: int | None
    chunk_index: int
    text: str
    score: float
    section: str | None = None
    scores: dict[str, float] = Field(description="each stage's score: dense, lexical, rerank")
    ranks: dict[str, int] = Field(description="each stage's 1-based rank")
    ocr: bool = Field(False, description="the text was read by OCR from a scan or an image")


class SearchResponse(BaseModel):
    """Results, best first."""

    results: list[SearchResult]
    warnings: list[str] = Field(
        default_factory=list, description="optional stages skipped (e.g. a reranker down)"
    )


@router.post("/search", response_model=SearchResponse)
def search(body: SearchRequest, kb: KbDep, viewer: ViewerDep) -> Response:
    """The k chunks most relevant to the query, best first, with file and page.

    Searches the shared documents, plus the private ones of the user named in
    ``X-OpenWebUI-User-Id``.
    """
    hits = kb.search(body.query, body.k, viewer, body.mode)
    # Serialised here: FastAPI would validate the response again and encode it
    # field by field, 0.44 ms of a search against 0.02 ms for pydantic's own JSON.
    found = SearchResponse(
        results=[
            SearchResult(
                document_id=h.document_id, source=h.source, page=h.page,
                chunk_index=h.chunk_index, text=h.text, score=h.score, section=h.section,
                scores=h.scores, ranks=h.ranks, ocr=h.ocr,
            )
            for h in hits
        ],
        warnings=hits.warnings,
    )
    return Response(found.model_dump_json(), media_type="application/json")
