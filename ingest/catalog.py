"""The catalog: every document, its state and the intents that keep Chroma in step.

Chroma and SQLite cannot share a transaction, so every vector write is
bracketed by an *intent* row in ``pending`` naming (document, generation)
vectors that must be deleted unless the catalog says they are current:

- add/update: intent for the new generation → write vectors → one transaction
  swaps the document row to the new generation and turns the intent into one
  for the old generation → delete old vectors → drop intent;
- delete: one transaction removes the row and records an intent for its
  vectors → delete vectors → drop intent.

Whatever the interruption, ``pending`` says exactly which vectors to remove,
and search ignores any vector whose generation is not current.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    type TEXT NOT NULL,
    size INTEGER NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    chunks INTEGER NOT NULL DEFAULT 0,
    generation INTEGER NOT NULL DEFAULT 0,
    fingerprint TEXT NOT NULL DEFAULT '',
    owner TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    pages INTEGER,
    ocr_pages INTEGER NOT NULL DEFAULT 0,
    blank_pages INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS documents_source ON documents(source);
-- Owned documents alone: every search asks whether any is indexed (has_private), and
-- without this that is a scan of every document (0.5 ms at 5,000, growing with them).
CREATE INDEX IF NOT EXISTS documents_owned ON documents(status) WHERE owner IS NOT NULL;
CREATE TABLE IF NOT EXISTS pending (
    document_id TEXT NOT NULL,
    generation INTEGER NOT NULL,
    PRIMARY KEY (document_id, generation)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# Columns added since the first release, for catalogs made before them.
ADDED_COLUMNS = {
    "pages": "INTEGER",
    "ocr_pages": "INTEGER NOT NULL DEFAULT 0",
    "blank_pages": "INTEGER NOT NULL DEFAULT 0",
}

INDEXED, FAILED = "indexed", "failed"
# Whether any indexed document has an owner; answered from the index documents_owned.
HAS_PRIVATE = "SELECT 1 FROM documents WHERE status = ? AND owner IS NOT NULL LIMIT 1"


@dataclass
class Document:
    """A catalog row."""

    id: str
    key: str
    source: str
    content_hash: str
    type: str
    size: int
    status: str
    error: str | None = None
    chunks: int = 0
    generation: int = 0
    fingerprint: str = ""
    owner: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    pages: int | None = None  # of a PDF or image; None for other types
    ocr_pages: int = 0  # read by OCR
    blank_pages: int = 0  # with no text at all (no text layer, and OCR found none)


_DOC_COLUMNS = [f.name for f in fields(Document)]


class Catalog:
    """SQLite catalog; safe to share between the threads of one process."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        have = {row["name"] for row in self._db.execute("PRAGMA table_info(documents)")}
        for column, kind in ADDED_COLUMNS.items():
            if column not in have:
                self._db.execute(f"ALTER TABLE documents ADD COLUMN {column} {kind}")

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._db.in_transaction:  # left open by a Ctrl-C that landed just after BEGIN
                self._db.execute("ROLLBACK")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _query(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, tuple(args)).fetchall()

    # -- documents --------------------------------------------------------

    def get(self, document_id: str) -> Document | None:
        """The document with this id."""
        rows = self._query("SELECT * FROM documents WHERE id = ?", [document_id])
        return Document(**dict(rows[0])) if rows else None

    def by_key(self, key: str) -> Document | None:
        """The document stored under this key (path or upload name)."""
        rows = self._query("SELECT * FROM documents WHERE key = ?", [key])
        return Document(**dict(rows[0])) if rows else None

    def find(self, ref: str) -> list[Document]:
        """Documents whose id, key or source name is ``ref``."""
        rows = self._query(
            "SELECT * FROM documents WHERE id = ? OR key = ? OR source = ? ORDER BY source",
            [ref, ref, ref],
        )
        return [Document(**dict(r)) for r in rows]

    def with_scheme(self, scheme: str) -> list[Document]:
        """Documents whose key starts with ``scheme:`` (e.g. every upload from Open WebUI)."""
        prefix = f"{scheme}:"
        rows = self._query(
            "SELECT * FROM documents WHERE substr(key, 1, ?) = ? ORDER BY id", [len(prefix), prefix]
        )
        return [Document(**dict(r)) for r in rows]

    def find_hash(self, content_hash: str) -> list[str]:
        """Ids of documents whose content has this hash."""
        rows = self._query("SELECT id FROM documents WHERE content_hash = ?", [content_hash])
        return [r["id"] for r in rows]

    def twin(
        self, content_hash: str, fingerprint: str, other_than: str, viewer: str | None
    ) -> Document | None:
        """Another indexed document with this content, embedded the same way, that
        ``viewer`` may already see (reusing any other would tell them it exists)."""
        rows = self._query(
            "SELECT * FROM documents WHERE content_hash = ? AND fingerprint = ? AND status = ?"
            " AND id != ? AND (owner IS NULL OR owner = ?) LIMIT 1",
            [content_hash, fingerprint, INDEXED, other_than, viewer],
        )
        return Document(**dict(rows[0])) if rows else None

    def documents(self, status: str | None = None) -> list[Document]:
        """All documents, optionally of one status, by source name."""
        sql, args = "SELECT * FROM documents", []
        if status:
            sql, args = sql + " WHERE status = ?", [status]
        return [Document(**dict(r)) for r in self._query(sql + " ORDER BY source, id", args)]

    def counts(self) -> dict[str, int]:
        """Number of documents and chunks by status; pages OCR'd and blank (indexed)."""
        rows = self._query(
            "SELECT status, COUNT(*) n, SUM(chunks) c, SUM(ocr_pages) o, SUM(blank_pages) b"
            " FROM documents GROUP BY status"
        )
        out = {f"documents_{r['status']}": int(r["n"]) for r in rows}
        indexed = [r for r in rows if r["status"] == INDEXED]
        out["chunks"] = sum(int(r["c"] or 0) for r in indexed)
        out["pages_ocr"] = sum(int(r["o"] or 0) for r in indexed)
        out["pages_blank"] = sum(int(r["b"] or 0) for r in indexed)
        return out

    def current_generations(
        self, document_ids: Iterable[str], viewer: str | None = None,
        granted: Collection[str] = (),
    ) -> dict[str, int]:
        """Generation of each indexed document among ``document_ids`` that ``viewer`` may see.

        Everyone sees shared documents (no owner); an owner also sees their own, and
        anyone the documents ``granted`` to them by name.
        """
        ids = list(set(document_ids))
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._query(
            f"SELECT id, generation, owner FROM documents WHERE status = ? AND id IN ({marks})",
            [INDEXED, *ids],
        )
        return {
            r["id"]: int(r["generation"]) for r in rows
            if r["owner"] is None or r["owner"] == viewer or r["id"] in granted
        }

    def ids_by_keys(self, keys: Iterable[str]) -> list[str]:
        """Ids of the documents stored under any of ``keys``."""
        keys = list(set(keys))
        out: list[str] = []
        for start in range(0, len(keys), 500):  # SQLite caps the parameters of one query
            part = keys[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = self._query(f"SELECT id FROM documents WHERE key IN ({marks})", part)
            out += [r["id"] for r in rows]
        return out

    def has_private(self) -> bool:
        """Whether any indexed document has an owner (searches must then filter)."""
        return bool(self._query(HAS_PRIVATE, [INDEXED]))

    def record_failure(self, doc: Document) -> None:
        """Record a failed first ingest; an indexed document is never overwritten."""
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO documents (id, key, source, content_hash, type, size, status, error,"
                " owner, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT(id) DO UPDATE SET status=excluded.status, error=excluded.error,"
                " content_hash=excluded.content_hash, size=excluded.size, type=excluded.type,"
                " owner=excluded.owner, updated_at=excluded.updated_at"
                " WHERE documents.status != 'indexed'",
                [doc.id, doc.key, doc.source, doc.content_hash, doc.type, doc.size, FAILED,
                 doc.error, doc.owner, now, now],
            )

    # -- the write protocol ----------------------------------------------

    def intend(self, document_id: str, generation: int) -> None:
        """Record that vectors of this generation are about to be written."""
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO pending VALUES (?, ?)", [document_id, generation])

    def commit(self, doc: Document) -> int | None:
        """Make ``doc`` (status indexed) current; returns the replaced generation, if any."""
        now = time.time()
        with self._tx() as db:
            old = db.execute(
                "SELECT generation, status, created_at FROM documents WHERE id = ?", [doc.id]
            ).fetchone()
            replaced = int(old["generation"]) if old and old["status"] == INDEXED else None
            doc.created_at = float(old["created_at"]) if old else now
            doc.updated_at, doc.status, doc.error = now, INDEXED, None
            values = asdict(doc)
            db.execute(
                f"INSERT OR REPLACE INTO documents ({','.join(_DOC_COLUMNS)})"
                f" VALUES ({','.join('?' * len(_DOC_COLUMNS))})",
                [values[c] for c in _DOC_COLUMNS],
            )
            db.execute("DELETE FROM pending WHERE document_id = ? AND generation = ?",
                       [doc.id, doc.generation])
            if replaced is not None and replaced != doc.generation:
                db.execute("INSERT OR IGNORE INTO pending VALUES (?, ?)", [doc.id, replaced])
            return replaced

    def remove(self, document_id: str) -> int | None:
        """Delete the row and record an intent for its vectors; returns their generation."""
        with self._tx() as db:
            row = db.execute(
                "SELECT generation, status FROM documents WHERE id = ?", [document_id]
            ).fetchone()
            db.execute("DELETE FROM documents WHERE id = ?", [document_id])
            if row is None or row["status"] != INDEXED:
                return None
            db.execute("INSERT OR IGNORE INTO pending VALUES (?, ?)",
                       [document_id, int(row["generation"])])
            return int(row["generation"])

    def done(self, document_id: str, generation: int) -> None:
        """The intent's vectors are gone (or current): forget it."""
        with self._tx() as db:
            db.execute("DELETE FROM pending WHERE document_id = ? AND generation = ?",
                       [document_id, generation])

    def pending(self) -> list[tuple[str, int]]:
        """Intents not yet settled: (document id, generation) whose vectors must go."""
        rows = self._query(
            "SELECT p.document_id, p.generation FROM pending p LEFT JOIN documents d"
            " ON d.id = p.document_id AND d.generation = p.generation AND d.status = 'indexed'"
            " WHERE d.id IS NULL"
        )
        return [(r["document_id"], int(r["generation"])) for r in rows]

    def next_generation(self, document_id: str) -> int:
        """A generation number never used for this document's vectors."""
        rows = self._query(
            "SELECT MAX(g) g FROM (SELECT generation g FROM documents WHERE id = ?"
            " UNION ALL SELECT generation g FROM pending WHERE document_id = ?)",
            [document_id, document_id],
        )
        return int(rows[0]["g"] or 0) + 1

    def switch_collection(self, name: str, docs: list[Document]) -> None:
        """After a re-index: the new collection and the documents' new state, atomically."""
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('collection', ?)", [name])
            db.execute("DELETE FROM meta WHERE key = 'reindex_collection'")
            for doc in docs:
                db.execute(
                    "UPDATE documents SET chunks = ?, fingerprint = ?, updated_at = ?, pages = ?,"
                    " ocr_pages = ?, blank_pages = ? WHERE id = ?",
                    [doc.chunks, doc.fingerprint, time.time(), doc.pages, doc.ocr_pages,
                     doc.blank_pages, doc.id],
                )

    # -- meta -------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """A stored setting (e.g. the active collection)."""
        rows = self._query("SELECT value FROM meta WHERE key = ?", [key])
        return str(rows[0]["value"]) if rows else None

    def set_meta(self, key: str, value: str | None) -> None:
        """Store or clear a setting."""
        with self._tx() as db:
            if value is None:
                db.execute("DELETE FROM meta WHERE key = ?", [key])
            else:
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])
