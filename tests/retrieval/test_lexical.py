"""The tantivy lexical index on disk: BM25 ranking, scope, generations, persistence."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrieval.lexical import LexicalIndex, LexicalIndexDamaged
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
