"""Dense pieces: how chunks are cut for embedding, and what the service does with them.

The write, copy, crash and recovery tests elsewhere run with pieces already
(``TEST_PIECE_TOKENS``); these check the cut itself and what is particular to it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ingest.pieces import PieceCutter, grouped
from retrieval.embedders import Embedder
from retrieval.types import Chunk
from tests.conftest import TEST_PIECE_TOKENS, MakeKb, write
from tests.ingest.test_pipeline import OCEAN, PARIS, assert_consistent, src

TEXT = OCEAN + PARIS + "Glaciers carve valleys over thousands of years as the ice moves. "


@pytest.mark.parametrize("tokenized", ["once", "by counting"])
def test_pieces_cover_the_chunk_in_near_equal_parts_that_fit(
    embedder: Embedder, tokenized: str
) -> None:
    count = embedder.count_tokens
    cutter = PieceCutter.of(embedder, 48) if tokenized == "once" else PieceCutter(48, count)
    chunk = Chunk("d", "d.txt", 0, TEXT, 0, len(TEXT), title="Notes on the natural world")
    room = 48 - (count(chunk.indexed_text) - count(chunk.text))
    parts = cutter.pieces(chunk)
    assert "".join(parts) == TEXT  # contiguous: nothing lost, nothing repeated
    assert len(parts) == math.ceil(count(TEXT) / room) >= 3
    sizes = [count(p) for p in parts]
    assert max(sizes) <= room + 3 and max(sizes) - min(sizes) <= 6  # cut at spaces
    texts = cutter.texts(chunk)
    assert all(t.startswith("Notes on the natural world\n") for t in texts)
    assert PieceCutter(0, count).texts(chunk) == [chunk.indexed_text]
    short = Chunk("d", "d.txt", 1, "A short line.", 0, 13)
    assert cutter.texts(short) == [short.indexed_text]


def test_text_without_spaces_is_cut_between_characters(embedder: Embedder) -> None:
    count = embedder.count_tokens
    text = "维基百科是一个自由内容的百科全书 项目。" * 20  # one space a sentence
    parts = PieceCutter.of(embedder, 64).pieces(Chunk("d", "d.txt", 0, text, 0, len(text)))
    assert "".join(parts) == text and len(parts) == math.ceil(count(text) / 64)
    sizes = [count(p) for p in parts]
    assert max(sizes) - min(sizes) <= 2  # not only at the spaces, which fall unevenly


def test_embedded_pieces_are_the_model_s_vectors_of_each_piece(embedder: Embedder) -> None:
    chunks = [Chunk("d", "d.txt", i, text, 0, len(text)) for i, text in enumerate([TEXT, PARIS])]
    cutter = PieceCutter.of(embedder, 32)
    texts = cutter.split(chunks)
    vectors_of = grouped(embedder.embed_documents([t for g in texts for t in g]),
                         [len(g) for g in texts])
    for chunk, vectors in zip(chunks, vectors_of, strict=True):
        texts = cutter.texts(chunk)
        assert vectors.shape == (len(texts), embedder.dimension)
        alone = embedder.embed_documents(texts)  # int8 ONNX: padding moves the last digits
        assert np.sum(vectors * alone, axis=1).min() > 0.99


def test_pieces_are_searched_copied_and_replaced_with_their_chunks(
    make_kb: MakeKb, tmp_path: Path
) -> None:
    kb = make_kb()
    paris, ocean = write(tmp_path / "paris.txt", PARIS), write(tmp_path / "o" / "ocean.md", OCEAN)
    kb.ingest([src(paris), src(ocean)])
    records = kb.store.vectors._collection.count() if kb.store.pieces else kb.store.count()
    if kb.store.pieces:
        assert kb.piece_tokens == TEST_PIECE_TOKENS
        assert records > kb.store.count() == kb.catalog.counts()["chunks"]
    else:  # Milvus: one vector a chunk, and the fingerprint says so
        assert kb.piece_tokens == 0
    hits = kb.search("largest animal in the sea", 5, mode="dense")
    assert hits[0].source == "ocean.md"
    assert len({(h.document_id, h.chunk_index) for h in hits}) == len(hits)  # each chunk once
    # The same content under another key copies the vectors, pieces and all.
    copy = write(tmp_path / "copy" / "ocean.md", OCEAN)
    [outcome] = kb.ingest([src(copy)])
    original = kb.catalog.find(src(ocean).key)[0]
    [(_, theirs)] = kb.store.stored(original.id, original.generation)
    [(_, mine)] = kb.store.stored(outcome.document_id, 1)
    assert [np.shape(v) for v in mine] == [np.shape(v) for v in theirs]
    assert all(np.allclose(a, b) for a, b in zip(mine, theirs, strict=True))
    write(paris, "Completely new text about glaciers and ice sheets. " * 3)
    assert kb.ingest([src(paris)])[0].status == "updated"
    assert_consistent(kb)  # no piece of the old generation is left


def test_a_new_piece_size_re_embeds_documents_on_their_next_ingest(
    make_kb: MakeKb, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    kb = make_kb(data)
    a = write(tmp_path / "a.txt", PARIS)
    kb.ingest([src(a)])
    kb.close()
    kb = make_kb(data, piece_tokens=0)
    expected = "updated" if kb.store.pieces else "unchanged"
    assert kb.ingest([src(a)])[0].status == expected
    assert_consistent(kb)
    if kb.store.pieces:
        assert kb.store.vectors._collection.count() == kb.store.count()

