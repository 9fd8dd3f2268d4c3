"""The stores on real embedded Chroma, a real Chroma server and milvus-lite."""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from retrieval.errors import UpstreamUnavailable
from retrieval.stores import SHARED, StoreBackend
from retrieval.stores.chroma import ChromaBackend, ChromaStore
from retrieval.stores.hybrid import HybridStore
from retrieval.stores.milvus import MilvusBackend
from retrieval.types import Candidate, Chunk, Scope
from tests.conftest import chroma_only, start_chroma, start_milvus


def unique(prefix: str) -> str:
    """A collection name no other test uses (the server is shared)."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


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


DIM = 8


def test_writes_are_split_into_chroma_sized_batches(chroma_backend: ChromaBackend) -> None:
    store = chroma_backend.open(unique("kb_batch"))
    small = ChromaStore(store._collection, max_batch=7)  # forces several upserts
    rng = np.random.default_rng(0)
    small.add(chunks("a", 1, 30), unit(rng, 30))
    assert small.count() == 30
    assert small.inventory() == {("a", 1): 30}


def test_query_scores_pages_and_generation_delete(store_backend: StoreBackend) -> None:
    store = store_backend.open(unique("kb_query"), DIM)
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


def test_delete_many_removes_exactly_those_generations(store_backend: StoreBackend) -> None:
    store = store_backend.open(unique("kb_many"), DIM)
    batch = chunks("a", 1, 2) + chunks("a", 2, 3) + chunks(ODD, 1, 2) + chunks("c", 1, 1)
    store.add(batch, unit(np.random.default_rng(7), len(batch)))
    store.delete_many([("a", 1), (ODD, 1), ("gone", 4)])
    assert store.inventory() == {("a", 2): 3, ("c", 1): 1}
    assert store.lexical_query("text", 10) and store.lexical_count() == 4


def test_stored_returns_one_generation_with_its_vectors(store_backend: StoreBackend) -> None:
    store = store_backend.open(unique("kb_stored"), DIM)
    rng = np.random.default_rng(3)
    vectors = unit(rng, 35)
    store.add(chunks("a", 1, 30) + chunks("a", 2, 5), vectors)
    got = {c.chunk_index: (c, v) for cs, vs in store.stored("a", 1) for c, v in zip(cs, vs,
                                                                                   strict=True)}
    assert sorted(got) == list(range(30))
    chunk, vector = got[3]
    assert (chunk.document_id, chunk.generation, chunk.page, chunk.text) == ("a", 1, 3, "text 3")
    assert np.allclose(vector, vectors[3], atol=1e-6)
    assert list(store.stored("a", 9)) == []


def test_chroma_reads_stored_chunks_in_pages_of_its_batch_size(
    chroma_backend: ChromaBackend,
) -> None:
    store = chroma_backend.open(unique("kb_stored"))
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
    store = chroma_backend.open(unique("kb_older"))
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


ODD, ODD_OWNER = 'b"\\ ]', 'bo "quoted"'  # quotes, a backslash: must not break a filter


@chroma_only
def test_dense_hits_read_from_the_lexical_copy_match_chroma_rows(
    store_backend: StoreBackend,
) -> None:
    store = store_backend.open(unique("kb_copy"), DIM)
    assert isinstance(store, HybridStore)
    rng = np.random.default_rng(5)
    vectors = unit(rng, 8)
    batch = chunks("a", 1, 4) + [replace(c, section="Methods", ocr=True) for c in chunks("b", 2, 4)]
    store.add(batch, vectors)
    for vector in vectors:
        assert store.query(vector, 5) == store.vectors.query(vector, 5)
    late = chunks("c", 1, 1)  # in Chroma, not yet in the lexical index (mid-write)
    store.vectors.add(late, vectors[:1])
    hits = store.query(vectors[0], 2)
    assert {h.document_id for h in hits} == {"a", "c"}
    assert hits == store.vectors.query(vectors[0], 2)


def test_nearest_ids_read_back_as_the_hits_query_returns(store_backend: StoreBackend) -> None:
    store = store_backend.open(unique("kb_nearest"), DIM)
    batch = chunks("a", 1, 3) + chunks(ODD, 2, 3)
    vectors = unit(np.random.default_rng(11), len(batch))
    store.add(batch, vectors)
    nearest = store.nearest(vectors[4], 4)
    assert [Candidate.of(i, s).id for i, s in nearest] == [i for i, _ in nearest]
    assert Candidate.of(nearest[0][0], 1.0).document_id == ODD
    assert store.hits(nearest) == store.query(vectors[4], 4)
    # In the order asked for, an id not stored left out.
    shuffled = [nearest[2], (f"{ODD}:9:0", 0.5), nearest[0]]
    assert [h.id for h in store.hits(shuffled)] == [nearest[2][0], nearest[0][0]]
    assert store.hits([]) == []


@pytest.mark.parametrize("leg", ["dense", "lexical"])
def test_both_legs_filter_by_scope(store_backend: StoreBackend, leg: str) -> None:
    store = store_backend.open(unique("kb_owner"), DIM)
    rng = np.random.default_rng(2)
    vectors = unit(rng, 3)
    docs = [Chunk("s", "s.txt", 0, "shared word", 0, 6),
            Chunk("a", "a.txt", 0, "al's word", 0, 1, owner="al"),
            Chunk(ODD, "b.txt", 0, "bo's word", 0, 1, owner=ODD_OWNER)]
    store.add(docs, vectors)
    def found(scope: Scope | None) -> set[str]:
        hits = (store.query(vectors[1], 3, scope) if leg == "dense"
                else store.lexical_query("word", 3, scope))
        return {h.document_id[0] for h in hits}

    assert found(Scope((SHARED, "al"))) == {"s", "a"}
    assert found(Scope((SHARED,))) == {"s"}
    assert found(None) == found(Scope()) == {"s", "a", "b"}
    assert found(Scope((SHARED,), frozenset({ODD}))) == {"s", "b"}  # granted by name
    assert found(Scope((), frozenset({"a", ODD}))) == {"a", "b"}  # named ones only
    assert found(Scope((ODD_OWNER,))) == {"b"}
    assert found(Scope(())) == set()


def test_collections_are_created_listed_and_dropped(store_backend: StoreBackend) -> None:
    one, two = unique("kb_one"), unique("kb_two")
    store_backend.open(one, DIM)
    store_backend.open(two, DIM)
    assert {one, two} <= set(store_backend.names())
    store_backend.drop(one)
    store_backend.drop(unique("kb_missing"))
    assert two in store_backend.names() and one not in store_backend.names()
    store_backend.heartbeat()


def test_lexical_leg_ranks_english_and_chinese_by_analysed_terms(
    store_backend: StoreBackend,
) -> None:
    store = store_backend.open(unique("kb_terms"), DIM)
    texts = ["Searching indexes quickly", "The index was searched once", "全文检索系统",
             "检查系统日志", "Unrelated words entirely"]
    docs = [Chunk(f"d{i}", f"d{i}.txt", 0, t, 0, len(t)) for i, t in enumerate(texts)]
    store.add(docs, unit(np.random.default_rng(5), len(docs)))
    english = store.lexical_query("searches for an index", 5)
    assert {h.document_id for h in english} == {"d0", "d1"}  # stemmed, stop words dropped
    assert all(h.score > 0 for h in english)
    chinese = store.lexical_query("检索", 5)
    assert chinese[0].document_id == "d2" and chinese[0].text == "全文检索系统"
    assert store.lexical_query("the of", 5) == [] and store.lexical_count() == 5


def test_a_chroma_server_that_goes_away_is_a_clear_error(tmp_path: Path) -> None:
    process, url = start_chroma(tmp_path / "server")
    backend = ChromaBackend(url=url)
    store = backend.open("kb_gone")
    process.terminate()
    process.wait(timeout=30)
    with pytest.raises(UpstreamUnavailable, match=f"Chroma server unreachable at {url}"):
        store.count()
    with pytest.raises(UpstreamUnavailable, match="is it running"):
        ChromaBackend(url=url)
    backend.close()


def test_a_milvus_server_that_goes_away_is_a_clear_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    process, url = start_milvus(tmp_path / "server")
    backend = MilvusBackend(url)  # milvus-lite serving over gRPC, as a Milvus server
    with caplog.at_level(logging.WARNING, logger="retrieval.stores.milvus"):
        store = backend.open("kb_gone", DIM)
    assert "no whitespace tokenizer" in caplog.text  # it has only \w+, as Milvus < 2.6
    store.add(chunks("a", 1, 2), unit(np.random.default_rng(6), 2))
    assert store.lexical_query("text", 2)[0].document_id == "a"
    process.terminate()
    process.wait(timeout=30)
    with pytest.raises(UpstreamUnavailable, match=f"Milvus unreachable at {url}"):
        store.count()
    with pytest.raises(UpstreamUnavailable, match="is it running"):
        MilvusBackend(url).names()
    backend.close()


def pieces_of(vectors: np.ndarray, counts: list[int]) -> list[np.ndarray]:
    """``vectors`` grouped as each chunk's piece vectors (``counts`` rows each)."""
    bounds = np.cumsum([0, *counts])
    return [vectors[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


@chroma_only
def test_a_chunk_with_dense_pieces_scores_as_its_best_piece(store_backend: StoreBackend) -> None:
    store = store_backend.open(unique("kb_pieces"), DIM)
    assert store.pieces
    rng = np.random.default_rng(8)
    vectors = unit(rng, 7)
    batch = chunks("a", 1, 3)  # three pieces, one, two (private to al)
    batch[2] = replace(batch[2], owner="al")
    store.add(batch, pieces_of(vectors[:6], [3, 1, 2]))
    assert store.count() == store.lexical_count() == 3 and store.vector_count() == 6
    assert store.in_step(3) and store.in_step(0)  # the catalog's figure, else Chroma's
    assert store.inventory() == {("a", 1): 3}
    for piece, chunk in [(0, 0), (1, 0), (2, 0), (3, 1), (4, 2), (5, 2)]:
        [best, *rest] = store.query(vectors[piece], 3)
        assert best.chunk_index == chunk and abs(best.score - 1.0) < 1e-4
        assert len({h.chunk_index for h in rest}) == len(rest) == 2  # each chunk once
    assert [h.chunk_index for h in store.query(vectors[5], 3, Scope((SHARED,)))] == [0, 1]
    late = chunks("c", 1, 1)  # in Chroma only (mid-write): the fallback reads Chroma's rows
    store.vectors.add(late, pieces_of(vectors[6:], [1]))
    assert store.query(vectors[6], 1)[0].document_id == "c"
    assert not store.in_step(4)  # neither the catalog's 4 nor Chroma's 4 chunks
    hits = store.query(vectors[1], 4)
    assert (hits[0].document_id, hits[0].chunk_index) == ("a", 0)
    assert sorted((h.document_id, h.chunk_index) for h in hits) == [
        ("a", 0), ("a", 1), ("a", 2), ("c", 0)]


def test_dense_pieces_are_stored_read_back_and_deleted_with_their_chunk(
    chroma_backend: ChromaBackend,
) -> None:
    store = chroma_backend.open(unique("kb_piece_pages"))
    small = ChromaStore(store._collection, max_batch=4)  # pages cut between pieces
    rng = np.random.default_rng(9)
    counts = [1, 3, 2, 1, 2, 3, 1]
    vectors = unit(rng, sum(counts))
    small.add(chunks("a", 1, 7) + chunks("b", 1, 1), [*pieces_of(vectors, counts), vectors[0]])
    assert small.count() == 8 and store.count() == 8  # a second handle sees pieces too
    nearest = store.nearest(vectors[1], 5)  # it fetches deeper when pieces crowd the top
    assert len({i for i, _ in nearest}) == 5 and nearest[0] == ("a:1:1", nearest[0][1])
    assert [len(page) for page in small.chunks()] == [4, 4]
    got = [(c, v) for cs, vs in small.stored("a", 1) for c, v in zip(cs, vs, strict=True)]
    assert [c.chunk_index for c, _ in got] == list(range(7))
    for (_, v), want in zip(got, pieces_of(vectors, counts), strict=True):
        assert np.allclose(np.atleast_2d(v), want, atol=1e-6)
    small.delete("a", 1)
    assert small.count() == 1 and store._collection.count() == 1
