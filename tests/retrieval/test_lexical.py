"""The tantivy lexical index on disk: BM25 ranking, scope, generations, persistence."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrieval.lexical import ID_LOOKUPS, LexicalIndex, LexicalIndexDamaged
from retrieval.types import Chunk, Scope


def chunk(doc: str, text: str, index: int = 0, generation: int = 1, owner: str | None = None,
          page: int | None = None) -> Chunk:
    """A chunk with just what the index needs."""
    return Chunk(doc, f"{doc}.txt", index, text, 0, len(text), page=page, generation=generation,
                 owner=owner)


def test_bm25_ranks_the_chunk_with_the_rare_terms_first(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "lex")
    index.add([
        chunk("a", "The report covers quarterly revenue and costs."),
        chunk("b", "Quarterly revenue grew; the tantivy engine indexes revenue reports."),
        chunk("c", "Nothing relevant here at all.", page=3),
    ])
    index.commit()
    hits = index.query("tantivy revenue", 10)
    assert [h.document_id for h in hits] == ["b", "a"]
    assert hits[0].score > hits[1].score > 0
    assert index.query("relevant", 1)[0].page == 3
    assert index.query("zebra", 10) == [] and index.query("the", 10) == []


def test_writes_are_visible_after_commit_and_survive_reopening(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "lex")
    index.add([chunk("a", "全文检索和向量检索")])
    assert index.count() == 0  # not committed yet
    index.commit()
    index.close()
    again = LexicalIndex(tmp_path / "lex")
    assert [h.text for h in again.query("检索", 5)] == ["全文检索和向量检索"]


def test_delete_one_generation_or_all(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "lex")
    index.add([chunk("a", "old whale text", generation=1), chunk("a", "new whale text", 0, 2),
               chunk("b", "whale too")])
    index.commit()
    index.delete("a", 1)
    assert index.inventory() == {("a", 2): 1, ("b", 1): 1}
    index.delete("a")
    assert index.inventory() == {("b", 1): 1}


def test_re_adding_a_chunk_id_replaces_it(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "lex")
    index.add([chunk("a", "first version")])
    index.add([chunk("a", "second version")])
    index.commit()
    assert [h.text for h in index.query("version", 5)] == ["second version"]


@pytest.mark.parametrize("wanted", [3, ID_LOOKUPS + 40])  # term lookups, then a term set
def test_hits_by_id_keep_the_order_given_and_leave_out_unknown_ids(
    tmp_path: Path, wanted: int
) -> None:
    index = LexicalIndex(tmp_path / "lex")
    stored = [chunk(f"d{i}", f"note number {i}", page=i) for i in range(wanted)]
    index.add(stored)
    index.commit()
    scored = [(c.id, float(i)) for i, c in enumerate(reversed(stored))]
    scored.insert(1, ("missing:1:0", 0.5))
    hits = index.hits(scored)
    assert [(h.document_id, h.score) for h in hits] == [
        (c.document_id, float(i)) for i, c in enumerate(reversed(stored))]
    assert [h.page for h in hits] == [c.page for c in reversed(stored)]


def test_a_scope_limits_what_a_query_returns(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "lex")
    index.add([chunk("shared", "salary policy"), chunk("mine", "salary of alice", owner="alice")])
    index.commit()
    def found(scope: Scope | None) -> set[str]:
        return {h.document_id for h in index.query("salary", 5, scope)}

    assert found(Scope(("", "bob"))) == {"shared"}
    assert found(Scope(("", "alice"))) == {"shared", "mine"}
    assert found(None) == found(Scope()) == {"shared", "mine"}
    # Named documents: granted besides the owners', or alone.
    assert found(Scope(("", "bob"), frozenset({"mine"}))) == {"shared", "mine"}
    assert found(Scope((), frozenset({"mine"}))) == {"mine"}
    assert found(Scope((), frozenset({"unknown"}))) == set()
    assert found(Scope(())) == set()


def test_a_damaged_folder_is_reported(tmp_path: Path) -> None:
    folder = tmp_path / "lex"
    folder.mkdir()
    (folder / "meta.json").write_text("{not json")
    with pytest.raises(LexicalIndexDamaged, match="cannot be opened"):
        LexicalIndex(folder)


WORDS = ["apple", "birch", "cedar", "dahlia", "elm", "fern", "ginkgo"]


def neighbourhoods(index: LexicalIndex) -> dict[str, list[int]]:
    """For each word, the chunks of document "d" that a query for it finds."""
    return {w: sorted(h.chunk_index for h in index.query(w, 20)) for w in WORDS}


def test_a_chunk_is_also_found_by_its_neighbours_words(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "lex")
    index.add([chunk("d", f"{word} notes", i) for i, word in enumerate(WORDS)]
              + [chunk("other", "apple alone")])
    index.commit()
    # Each word's own chunk and the two either side of it, within document "d".
    hits = index.query("dahlia", 20)
    assert [h.chunk_index for h in hits][0] == 3  # its own chunk first
    assert neighbourhoods(index)["dahlia"] == [1, 2, 3, 4, 5]
    assert neighbourhoods(index)["apple"] == [0, 0, 1, 2]  # "other" is chunk 0 too
    # Where both words sit in one window, that window's chunks beat a chunk with one.
    ranked = [(h.document_id, h.chunk_index) for h in index.query("apple birch", 20)]
    assert set(ranked[:2]) == {("d", 0), ("d", 1)} and ("other", 0) in ranked[2:]


@pytest.mark.parametrize("batches", ["one by one", "backwards", "rebuilt in pages of 3"])
def test_what_is_indexed_does_not_depend_on_how_chunks_were_batched(
    tmp_path: Path, batches: str
) -> None:
    chunks = [chunk("d", f"{word} notes", i, owner="alice") for i, word in enumerate(WORDS)]
    whole = LexicalIndex(tmp_path / "whole")
    whole.add(chunks)
    whole.commit()
    index = LexicalIndex(tmp_path / "batched")
    if batches == "rebuilt in pages of 3":
        index.rebuild_from(chunks[i : i + 3] for i in range(0, len(chunks), 3))
    else:
        for c in chunks if batches == "one by one" else chunks[::-1]:
            index.add([c])
            index.commit()
    assert index.count() == len(chunks)
    assert neighbourhoods(index) == neighbourhoods(whole)
    # Chunks written again for their new neighbours kept their owner.
    assert len(index.query("notes", 20, Scope(("alice",)))) == len(chunks)
    assert index.query("notes", 20, Scope(("bob",))) == []
