"""Who sees what: shared documents for everyone, a private upload only for its owner."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ingest.catalog import HAS_PRIVATE, INDEXED, Catalog
from ingest.pipeline import Source
from tests.conftest import MakeKb, write

SALARY = "The salary review for Dana Smith sets her pay at 91,000 euros from March. " * 2
HOLIDAYS = "Company holidays: the office is closed between Christmas and New Year. " * 2
WHALES = "Blue whales are the largest animals known to have lived. " * 2


def sources_of(hits: list) -> set[str]:
    """The file names among search hits."""
    return {h.source for h in hits}


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_private_upload_is_seen_by_its_owner_only(
    make_kb: MakeKb, tmp_path: Path, mode: str
) -> None:
    kb = make_kb()
    kb.ingest([
        Source("owui:1", "salary.txt", write(tmp_path / "salary.txt", SALARY), owner="alice"),
        Source("file:holidays", "holidays.txt", write(tmp_path / "holidays.txt", HOLIDAYS)),
    ])
    question = "What is Dana Smith's salary?"
    assert "salary.txt" in sources_of(kb.search(question, 5, viewer="alice", mode=mode))
    for viewer in ("bob", None):
        hits = kb.search("Dana Smith salary office closed", 5, viewer=viewer, mode=mode)
        assert sources_of(hits) == {"holidays.txt"}, viewer  # shared stays visible to all
    citations, pieces = kb.answer(question, viewer="bob", mode=mode)
    assert "91,000" not in "".join(pieces)
    assert all(c.source != "salary.txt" for c in citations)


def test_many_private_chunks_do_not_crowd_out_shared_ones(
    make_kb: MakeKb, tmp_path: Path
) -> None:
    kb = make_kb()
    private = [
        Source(f"owui:{i}", f"whales-{i}.txt", write(tmp_path / f"w{i}.txt", WHALES + str(i)),
               owner="alice")
        for i in range(30)
    ]
    shared = Source("file:o", "ocean.txt", write(tmp_path / "ocean.txt", "Whales live in oceans."))
    kb.ingest([*private, shared])
    assert [h.source for h in kb.search("largest whales", 3, viewer="bob")] == ["ocean.txt"]
    assert len(kb.search("largest whales", 10, viewer="alice")) == 10


def test_owner_survives_reindex_and_an_owner_change_reembeds(
    make_kb: MakeKb, tmp_path: Path
) -> None:
    kb = make_kb()
    path = write(tmp_path / "salary.txt", SALARY)
    kb.ingest([Source("owui:1", "salary.txt", path, owner="alice")])
    kb.reindex()
    assert sources_of(kb.search("Dana Smith pay", 3, viewer="bob")) == set()
    assert sources_of(kb.search("Dana Smith pay", 3, viewer="alice")) == {"salary.txt"}
    [outcome] = kb.ingest([Source("owui:1", "salary.txt", path, owner=None)])
    assert outcome.status == "updated"  # same bytes, now shared: the vectors must say so
    assert sources_of(kb.search("Dana Smith pay", 3, viewer="bob")) == {"salary.txt"}



def test_whether_to_filter_by_owner_is_answered_from_an_index(tmp_path: Path) -> None:
    """Every search asks whether any private document is indexed (``has_private``): with
    shared documents alone that must not scan them all."""
    path = tmp_path / "catalog.sqlite3"
    Catalog(path).close()  # a catalog made before the index gets it on opening too
    with sqlite3.connect(path) as db:
        plan = " ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {HAS_PRIVATE}",
                                                      [INDEXED]))
    db.close()
    assert "USING INDEX documents_owned" in plan, plan
