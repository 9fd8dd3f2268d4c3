"""Answers with citations, as JSON or streamed as server-sent events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from app.deps import KbDep, ViewerDep
from retrieval.answer import Citation
from retrieval.search import Mode

router = APIRouter(prefix="/v1", tags=["answer"])


class AnswerRequest(BaseModel):
    """A question."""

    query: str = Field(min_length=1, max_length=8000)
    k: int = Field(default=5, ge=1, le=50)
    stream: bool = False
    mode: Mode = "hybrid"


class AnswerResponse(BaseModel):
    """The answer and its sources."""

    answer: str
    citations: list[Citation]  # ``[n]`` in the answer refers to ``n``


@router.post("/answer", response_model=AnswerResponse)
def answer(
    body: AnswerRequest, kb: KbDep, viewer: ViewerDep
) -> AnswerResponse | StreamingResponse:
    """Answer from the documents only, citing sources as [n]; "not found" when nothing fits.

    With ``stream: true`` the reply is server-sent events: ``{"delta": text}`` pieces,
    then ``{"citations": [...]}``, then ``[DONE]``. Scope as in ``/v1/search``.
    """
    citations, pieces = kb.answer(body.query, body.k, viewer, body.mode)
    if body.stream:
        return StreamingResponse(_events(pieces, citations), media_type="text/event-stream")
    return AnswerResponse(answer="".join(pieces), citations=citations)


def _events(pieces: Iterator[str], citations: list[Citation]) -> Iterator[str]:
    for piece in pieces:
        yield f"data: {json.dumps({'delta': piece})}\n\n"
    yield f"data: {json.dumps({'citations': [asdict(c) for c in citations]})}\n\n"
    yield "data: [DONE]\n\n"
