"""Helpers for driving the API in tests."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient


def wait_job(client: TestClient, job_id: str, timeout: float = 120) -> dict[str, Any]:
    """Poll a job until it is done or failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "failed", "interrupted"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


def upload(client: TestClient, files: list[tuple[str, bytes]]) -> dict[str, Any]:
    """POST files and wait for the ingest job."""
    response = client.post("/v1/documents", files=[("files", f) for f in files])
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/v1/jobs/{response.json()['id']}"
    return wait_job(client, response.json()["id"])
