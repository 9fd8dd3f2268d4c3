"""Chat for Open WebUI: a conversation in, a grounded reply and its sources out.

The search query is the last user turn, with the turn before it when the last
is too short to stand alone ("and in 2023?"). Open WebUI's background tasks
(titles, tags, follow-ups; it says so in the header its connection config
sends) skip retrieval.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from app.service import KnowledgeBase
from app.webui_scope import ChatScope
from retrieval.answer import Citation

SHORT_QUESTION_WORDS = 4
CONTEXT_END = "</context>"


def text_of(content: Any) -> str:
    """Message content as text: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def question_of(turn: str) -> str:
    """A user turn without the file context Open WebUI may put in front of it.

    With a file attached in the chat (and RAG_SYSTEM_CONTEXT off), Open WebUI
    prepends its RAG template, the file's text inside ``<context>…</context>``,
    to the user's words; the question is what follows the context.
    """
    _, marker, tail = turn.rpartition(CONTEXT_END)
    return tail.strip() if marker and tail.strip() else turn


def search_query(messages: list[dict[str, Any]]) -> str:
    """The last user turn, joined with the previous one when it is very short."""
    turns = [
        question_of(text_of(m.get("content")).strip()) for m in messages if m.get("role") == "user"
    ]
    turns = [t for t in turns if t]
    if not turns:
        return ""
    if len(turns) > 1 and len(turns[-1].split()) < SHORT_QUESTION_WORDS:
        return f"{turns[-2]} {turns[-1]}"
    return turns[-1]


def reply(
    kb: KnowledgeBase, messages: list[dict[str, Any]], task: str = "", viewer: str | None = None,
    scope: ChatScope | None = None,
) -> tuple[list[Citation], Iterator[str]]:
    """Citations and the reply's text; a background task goes to the LLM without retrieval.

    ``viewer`` is the asking user: the search covers shared documents and theirs, plus
    the files of knowledge bases Open WebUI shares with them; or, when the chat picked
    knowledge bases or files, those alone (``scope``, checked by Open WebUI).
    """
    if task:
        return [], _task_reply(kb, messages)
    question = search_query(messages)
    if not question:
        return [], iter(["Ask a question about the documents in the knowledge base."])
    if scope is None:
        return kb.answer(question, viewer=viewer)
    only = None if scope.picked is None else kb.webui_documents(scope.picked)
    return kb.answer(question, viewer=viewer, only=only, granted=kb.webui_documents(scope.granted))


def _task_reply(kb: KnowledgeBase, messages: list[dict[str, Any]]) -> Iterator[str]:
    if kb.llm is None:
        # No model to write titles, tags or follow-ups: an empty JSON object makes Open
        # WebUI keep its defaults (the question as the title, no tags, no follow-ups).
        return iter(["{}"])
    plain = [{"role": m["role"], "content": text_of(m.get("content"))} for m in messages]
    return kb.llm.stream(plain, max_tokens=256)


def source_events(citations: list[Citation]) -> list[dict[str, Any]]:
    """Open WebUI ``source`` events, one per document, in citation-number order."""
    events: dict[int, dict[str, Any]] = {}
    for c in citations:
        data = events.setdefault(
            c.n,
            {
                "source": {"id": c.document_id, "name": c.source},
                "document": [],
                "metadata": [],
                "distances": [],
            },
        )
        data["document"].append(c.text)
        # Open WebUI counts pages from 0 (it shows page + 1); kb counts from 1.
        page = c.page - 1 if c.page else None
        data["metadata"].append({"source": c.source, "name": c.source, "page": page})
        data["distances"].append(c.score)
    return [{"event": {"type": "source", "data": events[n]}} for n in sorted(events)]
