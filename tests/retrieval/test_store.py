"""The Chroma store adapter on real embedded Chroma."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from retrieval.errors import UpstreamUnavailable
from retrieval.store import SHARED, ChromaBackend, ChromaStore
from retrieval.types import Chunk, Scope
from tests.conftest import start_chroma


def unique(prefix: str) -> str:
    """A collection name no other test uses (the server is shared)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def unit(rng: np.random.Generator, n: int, dim: int = 8) -> np.ndarray:
    """Random unit vectors."""
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def chunks(doc: str, generation: int, n: int) -> list[Chunk]:
    """n chunks of one document generation."""
    return [
        Chunk(doc, f"{doc}.txt", i, f"text {i}", 0, 6, page=i or None, generation=generation)
        for i in range(n)
    ]


def test_writes_are_split_into_chroma_sized_batches(chroma_backend: ChromaBackend) -> None:
    store = chroma_backend.open(unique("kb-batch"))
    small = ChromaStore(store._collection, max_batch=7)  # forces several upserts
    rng = np.random.default_rng(0)
    small.add(chunks("a", 1, 30), unit(rng, 30))
    assert small.count() == 30
    assert small.inventory() == {("a", 1): 30}


def test_query_scores_pages_and_generation_delete(chroma_backend: ChromaBackend) -> None:
    store = chroma_backend.open(unique("kb-query"))
    rng = np.random.default_rng(1)
    vectors = unit(rng, 6)
    store.add(chunks("a", 1, 3) + chunks("a", 2, 3), vectors)
    hits = store.query(vectors[4], 2)
    assert (hits[0].document_id, hits[0].generation, hits[0].chunk_index) == ("a", 2, 1)
    assert abs(hits[0].score - 1.0) < 1e-4 and hits[0].score >= hits[1].score
    assert hits[0].page == 1 and store.query(vectors[3], 1)[0].page is None
    store.delete("a", 1)
    assert store.inventory() == {("a", 2): 3}
    store.delete("a")
    assert store.count() == 0


def test_stored_returns_one_generation_with_its_vectors_in_pages(
    chroma_backend: ChromaBackend,
) -> None:
    store = chroma_backend.open(unique("kb-stored"))
    small = ChromaStore(store._collection, max_batch=7)
    rng = np.random.default_rng(3)
    vectors = unit(rng, 35)
    small.add(chunks("a", 1, 30) + chunks("a", 2, 5), vectors)
    pages = list(small.stored("a", 1))
    assert [len(c) for c, _ in pages] == [7, 7, 7, 7, 2]
    got = {c.chunk_index: (c, v) for cs, vs in pages for c, v in zip(cs, vs, strict=True)}
    assert sorted(got) == list(range(30))
    chunk, vector = got[3]
    assert (chunk.document_id, chunk.generation, chunk.page, chunk.text) == ("a", 1, 3, "text 3")
    assert np.allclose(vector, vectors[3], atol=1e-6)


def test_chunks_written_with_their_text_as_a_chroma_document_still_read(
    chroma_backend: ChromaBackend,
) -> None:
    """Stores written before the text moved into the metadata keep serving it."""
    store = chroma_backend.open(unique("kb-older"))
    rng = np.random.default_rng(4)
    vectors = unit(rng, 2)
    old, new = chunks("old", 1, 1)[0], chunks("new", 1, 1)[0]
    meta = {"document_id": "old", "source": "old.txt", "chunk_index": 0, "generation": 1,
            "start": 0, "end": 6, "owner": SHARED}
    store._collection.upsert(ids=[old.id], embeddings=vectors[:1], documents=["older text"],
                             metadatas=[meta])
    store.add([new], vectors[1:])
    assert store.query(vectors[0], 1)[0].text == "older text"
    assert store.query(vectors[1], 1)[0].text == "text 0"
    assert {c.text for page in store.chunks() for c in page} == {"older text", "text 0"}
    [(stored, _)] = store.stored("old", 1)
    assert [c.text for c in stored] == ["older text"]


def test_query_filters_by_scope(chroma_backend: ChromaBackend) -> None:
    store = chroma_backend.open(unique("kb-owner"))
    rng = np.random.default_rng(2)
    vectors = unit(rng, 3)
    docs = [Chunk("s", "s.txt", 0, "shared", 0, 6), Chunk("a", "a.txt", 0, "a", 0, 1, owner="al"),
            Chunk("b", "b.txt", 0, "b", 0, 1, owner="bo")]
    store.add(docs, vectors)
    def found(scope: Scope | None) -> set[str]:
        return {h.document_id for h in store.query(vectors[1], 3, scope)}

    assert found(Scope((SHARED, "al"))) == {"s", "a"}
    assert found(Scope((SHARED,))) == {"s"}
    assert found(None) == found(Scope()) == {"s", "a", "b"}
    assert found(Scope((SHARED,), frozenset({"b"}))) == {"s", "b"}  # granted by name
    assert found(Scope((), frozenset({"a", "b"}))) == {"a", "b"}  # named ones only
    assert found(Scope(())) == set()


def test_collections_are_created_listed_and_dropped(chroma_backend: ChromaBackend) -> None:
    one, two = unique("kb-one"), unique("kb-two")
    chroma_backend.open(one)
    chroma_backend.open(two)
    assert {one, two} <= set(chroma_backend.names())
    chroma_backend.drop(one)
    chroma_backend.drop(unique("kb-missing"))
    assert two in chroma_backend.names() and one not in chroma_backend.names()
    chroma_backend.heartbeat()


def test_a_chroma_server_that_goes_away_is_a_clear_error(tmp_path: Path) -> None:
    process, url = start_chroma(tmp_path / "server")
    backend = ChromaBackend(url=url)
    store = backend.open("kb-gone")
    process.terminate()
    process.wait(timeout=30)
    with pytest.raises(UpstreamUnavailable, match=f"Chroma server unreachable at {url}"):
        store.count()
    with pytest.raises(UpstreamUnavailable, match="is it running"):
        ChromaBackend(url=url)
    backend.close()
