"""Search the knowledge base."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from app.deps import KbDep, ViewerDep

router = APIRouter(prefix="/v1", tags=["search"])


class SearchRequest(BaseModel):
    """A search query."""

    query: str = Field(min_length=1, max_length=8000)
    k: int = Field(default=10, ge=1, le=100)


class SearchResult(BaseModel):
    """One chunk found, with where it comes from."""

    document_id: str
    source: str
    page: int | None
    chunk_index: int
    text: str
    score: float
    section: str | None = None


class SearchResponse(BaseModel):
    """Results, best first."""

    results: list[SearchResult]


@router.post("/search")
def search(body: SearchRequest, kb: KbDep, viewer: ViewerDep) -> SearchResponse:
    """The k chunks most relevant to the query, best first, with file and page.

    Searches the shared documents, plus the private ones of the user named in
    ``X-OpenWebUI-User-Id``.
    """
    hits = kb.search(body.query, body.k, viewer)
    return SearchResponse(
        results=[
            SearchResult(
                document_id=h.document_id, source=h.source, page=h.page,
                chunk_index=h.chunk_index, text=h.text, score=h.score, section=h.section,
            )
            for h in hits
        ]
    )
