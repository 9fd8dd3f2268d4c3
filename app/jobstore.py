"""Background jobs' state: one SQLite file beside the catalog, read back by id from any request.

Jobs are the API's bookkeeping, not the index's, so they live here, not in
``ingest.catalog``. Jobs that an earlier process left queued or running are
marked interrupted when the store opens.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INTERRUPTED = "interrupted"  # a job the service stopped before it finished

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    total INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    results TEXT NOT NULL DEFAULT '[]',
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
"""


@dataclass
class Job:
    """A background job and the outcome of each of its files so far."""

    id: str
    kind: str
    status: str  # queued | running | done | failed | interrupted
    total: int
    done: int = 0
    results: list[dict[str, Any]] | None = None
    error: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


class JobStore:
    """SQLite job rows; safe to share between the threads of one process."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._write(
            "UPDATE jobs SET status = ?, error = 'interrupted: the service stopped before the"
            " job finished; upload the files again' WHERE status IN ('queued', 'running')",
            [INTERRUPTED],
        )

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def create(self, job: Job) -> None:
        """Store a new job."""
        now = time.time()
        self._write(
            "INSERT INTO jobs (id, kind, status, total, created_at, updated_at)"
            " VALUES (?,?,?,?,?,?)",
            [job.id, job.kind, job.status, job.total, now, now],
        )

    def update(self, job_id: str, **changes: Any) -> None:
        """Update some of a job's fields."""
        if "results" in changes:
            changes["results"] = json.dumps(changes["results"])
        changes["updated_at"] = time.time()
        cols = ", ".join(f"{k} = ?" for k in changes)
        self._write(f"UPDATE jobs SET {cols} WHERE id = ?", [*changes.values(), job_id])

    def get(self, job_id: str) -> Job | None:
        """A job by id."""
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", [job_id]).fetchone()
        if row is None:
            return None
        data = dict(row)
        data["results"] = json.loads(data["results"])
        return Job(**data)

    def _write(self, sql: str, args: list[Any]) -> None:
        with self._lock:
            self._db.execute(sql, args)
