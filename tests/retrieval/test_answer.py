"""Numbered citations for answers."""

from __future__ import annotations


def test_citations_are_numbered_by_document_in_order_of_first_appearance() -> None:
    from retrieval.answer import citations_for
    from retrieval.types import Hit

    hits = [
        Hit("a", "a.pdf", 0, "x", 0.9, page=1),
        Hit("b", "b.txt", 0, "y", 0.8),
        Hit("a", "a.pdf", 3, "z", 0.7, page=4),
    ]
    assert [(c.n, c.source, c.page) for c in citations_for(hits)] == [
        (1, "a.pdf", 1),
        (2, "b.txt", None),
        (1, "a.pdf", 4),
    ]
