"""Chunking in the real model's tokens."""

from __future__ import annotations

from ingest.chunking import Chunker, ChunkSettings
from retrieval.embedders import LocalEmbedder
from retrieval.types import Segment

LONG = " ".join(f"Sentence number {i} talks about topic {i % 7}." for i in range(400))


def test_chunks_fit_the_model_and_map_back_to_the_text(embedder: LocalEmbedder) -> None:
    settings = ChunkSettings(tokens=10_000, overlap=40).fitted(
        embedder.max_tokens, embedder.special_tokens
    )
    assert settings.tokens == embedder.max_tokens - 2 and settings.overlap == 40
    chunker = Chunker(settings, embedder.count_tokens)
    segments = [Segment("Preface.", 0, page=1), Segment(LONG, 10, page=2, section="Body")]
    chunks = list(chunker.chunks(segments, document_id="d", source="s.pdf", generation=3))
    assert len(chunks) > 5
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert embedder.count_tokens(c.text) <= settings.tokens
        assert c.generation == 3 and c.id == f"d:3:{c.chunk_index}"
    first, body = chunks[0], chunks[1:]
    assert (first.text, first.page, first.start, first.end) == ("Preface.", 1, 0, 8)
    for c in body:
        assert c.page == 2 and c.section == "Body"
        assert LONG[c.start - 10 : c.end - 10] == c.text


def test_chunks_overlap(embedder: LocalEmbedder) -> None:
    chunker = Chunker(ChunkSettings(tokens=64, overlap=16), embedder.count_tokens)
    spans = [
        (c.start, c.end)
        for c in chunker.chunks([Segment(LONG, 0)], document_id="d", source="s", generation=1)
    ]
    assert all(
        next_start < end for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False)
    )


def test_whitespace_only_text_gives_no_chunks(embedder: LocalEmbedder) -> None:
    chunker = Chunker(ChunkSettings(), embedder.count_tokens)
    chunks = chunker.chunks([Segment("  \n\n ", 0)], document_id="d", source="s", generation=1)
    assert list(chunks) == []
