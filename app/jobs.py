"""Background jobs: uploads and re-indexing run on one worker thread, one at a time.

One worker is enough: embedding uses every core. Job state lives in
``app.jobstore``, so a job can be read back by id from any request.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from app.jobstore import INTERRUPTED, Job, JobStore
from app.service import KnowledgeBase
from ingest.pipeline import Outcome, Source
from retrieval.errors import Cancelled

log = logging.getLogger(__name__)

INTERRUPTED_ERROR = (
    "interrupted: the service stopped; files finished before that are indexed, the rest "
    "were rolled back: upload them again"
)
Work = Callable[[Callable[[Outcome], None]], list[Outcome]]


class JobRunner:
    """Queues work, runs it in order and records progress per file."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb
        self.store = JobStore(kb.data_dir / "jobs.sqlite3")
        self._queue: queue.Queue[tuple[str, Work, list[Path]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="kb-jobs", daemon=True)
        self._thread.start()

    def ingest(self, sources: list[Source], cleanup: list[Path]) -> Job:
        """Queue an ingest of ``sources``; ``cleanup`` files are deleted afterwards."""
        return self._submit(
            "ingest", len(sources), lambda report: self.kb.ingest(sources, report), cleanup
        )

    def reindex(self) -> Job:
        """Queue a re-index of every document."""
        total = self.kb.counts().get("documents_indexed", 0)
        return self._submit("reindex", total, lambda report: self.kb.reindex(report), [])

    def get(self, job_id: str) -> Job | None:
        """A job by id."""
        return self.store.get(job_id)

    def close(self, timeout: float = 30) -> None:
        """Cancel the running job (its files in flight roll back) and stop."""
        self.kb.shutdown()
        self._queue.put(None)
        self._thread.join(timeout)
        self.store.close()

    def _submit(self, kind: str, total: int, work: Work, cleanup: list[Path]) -> Job:
        job = Job(id=uuid.uuid4().hex, kind=kind, status="queued", total=total, results=[])
        self.store.create(job)
        self._queue.put((job.id, work, cleanup))
        return self.store.get(job.id) or job

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            job_id, work, cleanup = item
            try:
                if self.kb.closing.is_set():  # queued behind the stop: never started
                    self.store.update(job_id, status=INTERRUPTED, error=INTERRUPTED_ERROR)
                else:
                    self._run(job_id, work)
            finally:
                for path in cleanup:
                    path.unlink(missing_ok=True)

    def _run(self, job_id: str, work: Work) -> None:
        jobs = self.store
        jobs.update(job_id, status="running")
        results: list[dict[str, object]] = []

        def report(outcome: Outcome) -> None:
            results.append(asdict(outcome))
            jobs.update(job_id, done=len(results), results=results)

        try:
            work(report)
        except Cancelled:
            jobs.update(job_id, status=INTERRUPTED, error=INTERRUPTED_ERROR)
            return
        except Exception as exc:  # the job fails as a whole, with the reason
            log.exception("job %s failed", job_id)
            jobs.update(job_id, status="failed", error=str(exc))
            return
        jobs.update(job_id, status="done")
