"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from app.deps import KbDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(kb: KbDep) -> JSONResponse:
    """The catalog, the vector store and the embedder all answer."""
    checks = kb.readiness()
    ready = all(v == "ok" or v.startswith("ok ") for v in checks.values())
    body = {"status": "ready" if ready else "not ready", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics")
def metrics(request: Request, kb: KbDep) -> Response:
    """Prometheus metrics."""
    rendered: Response = request.app.state.metrics.render(kb)
    return rendered
