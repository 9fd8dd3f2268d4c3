"""Answers grounded in retrieved chunks, with numbered citations.

With a chat model, the best hits become numbered sources in a prompt that
fits the model's context, and the model is told to answer only from them.
Without one, the answer is extractive: the best passages, quoted, each with
its citation. Either way, hits below ``min_score`` do not count, and a
question nothing answers gets an honest "not found".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from retrieval.analysis import term_coverage
from retrieval.chat import ChatModel, Messages
from retrieval.types import Hit

NOT_FOUND = "Not found in the knowledge base."
SYSTEM = (
    "You answer questions using only the numbered sources below. Cite every claim with "
    "its source number in square brackets, like [1]. If the sources do not contain the "
    f"answer, reply exactly: {NOT_FOUND}"
)
ANSWER_TOKENS = 512  # room kept for the answer itself


@dataclass(frozen=True)
class Citation:
    """Where a numbered source comes from."""

    n: int
    document_id: str
    source: str
    page: int | None
    chunk_index: int
    text: str
    score: float


def citations_for(hits: Sequence[Hit]) -> list[Citation]:
    """Number the hits by document, in order of first appearance (as Open WebUI numbers sources).

    Chunks of one document share its number, so ``[n]`` means the same file
    everywhere: in the prompt, in the answer and in the UI's source list.
    """
    numbers: dict[str, int] = {}
    return [
        Citation(
            numbers.setdefault(h.document_id, len(numbers) + 1),
            h.document_id,
            h.source,
            h.page,
            h.chunk_index,
            h.text,
            h.score,
        )
        for h in hits
    ]


def label(c: Citation) -> str:
    """``file.pdf, page 3`` or ``notes.txt``."""
    return f"{c.source}, page {c.page}" if c.page else c.source


def build_messages(
    question: str,
    citations: Sequence[Citation],
    context_tokens: int,
    count_tokens: Callable[[str], int],
) -> tuple[Messages, list[Citation]]:
    """System prompt with as many numbered sources as fit the model's context."""
    budget = context_tokens - ANSWER_TOKENS - count_tokens(SYSTEM + question) - 64
    used: list[Citation] = []
    blocks: list[str] = []
    for c in citations:
        block = f"[{c.n}] ({label(c)})\n{c.text}"
        cost = count_tokens(block) + 8
        if cost > budget:
            break
        budget -= cost
        used.append(c)
        blocks.append(block)
    system = SYSTEM + "\n\nSources:\n\n" + "\n\n".join(blocks)
    return [{"role": "system", "content": system}, {"role": "user", "content": question}], used


def extractive(citations: Sequence[Citation], passages: int = 3) -> Iterator[str]:
    """The best passages, quoted, with their citation markers."""
    for c in citations[:passages]:
        text = " ".join(c.text.split())
        yield f"> {text} [{c.n}]\n\n"


MIN_TERM_COVERAGE = 0.5  # a lexical hit must hold half the question's terms to answer it


def grounded(question: str, hit: Hit, min_score: float) -> bool:
    """Whether a hit may answer: similar enough (dense), or holding enough of the question's terms.

    The lexical test matters where the embedding model is weak (MiniLM on
    Chinese): the right passage can have a low cosine but share the words.
    """
    dense = hit.scores.get("dense", hit.score if not hit.scores else None)
    if dense is not None and dense >= min_score:
        return True
    return term_coverage(question, hit.text) >= MIN_TERM_COVERAGE


def answer_stream(
    question: str,
    hits: Sequence[Hit],
    llm: ChatModel | None,
    count_tokens: Callable[[str], int],
    min_score: float = 0.0,
) -> tuple[list[Citation], Iterator[str]]:
    """The citations that back the answer, and the answer's text as it is produced."""
    relevant = [h for h in hits if grounded(question, h, min_score)]
    citations = citations_for(relevant)
    if not citations:
        return [], iter([NOT_FOUND])
    if llm is None:
        return citations, extractive(citations)
    messages, used = build_messages(question, citations, llm.context_tokens, count_tokens)
    return used, llm.stream(messages, max_tokens=ANSWER_TOKENS)
