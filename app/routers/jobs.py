"""Background jobs: progress and per-file outcome; re-indexing."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel

from app.deps import JobsDep
from app.jobstore import Job

router = APIRouter(prefix="/v1", tags=["jobs"])


class JobView(BaseModel):
    """A job: status is queued, running, done, failed or interrupted; one result per file."""

    id: str
    kind: str
    status: str
    total: int
    done: int
    results: list[dict[str, Any]]
    error: str | None

    @classmethod
    def of(cls, job: Job) -> JobView:
        """From a catalog job."""
        return cls(
            id=job.id, kind=job.kind, status=job.status, total=job.total, done=job.done,
            results=job.results or [], error=job.error,
        )


@router.get("/jobs/{job_id}")
def get_job(job_id: str, jobs: JobsDep) -> JobView:
    """A job's progress and the outcome of each file so far."""
    job = jobs.get(job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job with id {job_id!r}")
    return JobView.of(job)


@router.post("/reindex", status_code=status.HTTP_202_ACCEPTED)
def reindex(jobs: JobsDep) -> JobView:
    """Re-embed every document with the current settings; search keeps working meanwhile."""
    return JobView.of(jobs.reindex())
