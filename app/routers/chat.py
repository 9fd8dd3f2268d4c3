"""OpenAI-compatible chat, so Open WebUI (or any OpenAI client) can talk to the knowledge base."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, model_validator

from app.conversation import reply, source_events
from app.deps import KbDep, ViewerDep
from app.webui_scope import verify
from retrieval.answer import Citation
from retrieval.errors import KbError

router = APIRouter(prefix="/v1", tags=["chat"])
MODEL_ID = "kb"
TASK_HEADER = "x-kb-task"  # Open WebUI fills it from {{TASK}} for titles, tags, follow-ups


class ContentPart(BaseModel):
    """One part of a message's content; a text part must carry text."""

    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None

    @model_validator(mode="after")
    def _text_has_text(self) -> ContentPart:
        if self.type == "text" and self.text is None:
            raise ValueError("a text part needs a string in 'text'")
        return self


class ChatMessage(BaseModel):
    """One chat message: content as a string or a list of parts."""

    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[ContentPart] | None = None


class ChatRequest(BaseModel):
    """An OpenAI chat request; unknown fields (tools, options) are ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str = MODEL_ID
    messages: list[ChatMessage]
    stream: bool = False
    kb_scope: Any = None  # what the chat picked, signed by kb's filter in Open WebUI


@router.get("/models")
def models() -> dict[str, Any]:
    """The one model kb serves: answers from the knowledge base."""
    return {
        "object": "list",
        "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "kb"}],
    }


@router.post("/chat/completions", response_model=None)
def chat_completions(body: ChatRequest, request: Request, kb: KbDep, viewer: ViewerDep) -> Any:
    """Answer the conversation's last question from the documents, citing sources as [n].

    Searches the shared documents plus the asking user's own (X-OpenWebUI-User-Id) and
    those Open WebUI shares with them, or only what the chat picked (``kb_scope``).
    """
    messages = [m.model_dump(exclude_none=True) for m in body.messages]
    scope = verify(body.kb_scope, request.app.state.scope_secret, viewer)
    task = request.headers.get(TASK_HEADER, "")
    citations, pieces = reply(kb, messages, task, viewer, scope)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    if body.stream:
        return StreamingResponse(
            _stream(completion_id, citations, pieces), media_type="text/event-stream"
        )
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL_ID,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "".join(pieces)},
            }
        ],
        "sources": [e["event"]["data"] for e in source_events(citations)],
    }


def _chunk(completion_id: str, delta: dict[str, str], finish: str | None = None) -> str:
    body = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL_ID,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n"


def _stream(completion_id: str, citations: list[Citation], pieces: Iterator[str]) -> Iterator[str]:
    for event in source_events(citations):  # first, so the UI can show sources at once
        yield f"data: {json.dumps(event)}\n\n"
    yield _chunk(completion_id, {"role": "assistant", "content": ""})
    try:
        for piece in pieces:
            yield _chunk(completion_id, {"content": piece})
    except KbError as exc:  # the status line is sent already: say it in the answer
        yield _chunk(completion_id, {"content": f"\n\n[kb error: {exc}]"})
    yield _chunk(completion_id, {}, "stop")
    yield "data: [DONE]\n\n"
