"""The FastAPI app factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from app.errors import status_for
from app.factory import open_knowledge_base
from app.jobs import JobRunner
from app.limits import BodyLimit
from app.metrics import Metrics, MetricsMiddleware
from app.routers import answer, chat, documents, health, jobs, process, search, webui
from app.service import KnowledgeBase
from app.settings import MB, Settings
from app.webui_client import admin_from
from app.webui_scope import FILTER_SOURCE, scope_secret
from app.webui_sync import DeletionFollower
from retrieval.errors import KbError

log = logging.getLogger("kb")


async def kb_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Domain errors become JSON with the message and the error's name."""
    assert isinstance(exc, KbError)
    return JSONResponse(
        {"detail": str(exc), "error": type(exc).__name__}, status_code=status_for(exc)
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the knowledge base and the job worker; close them on shutdown."""
    try:
        kb = open_knowledge_base(app.state.settings)
    except KbError as exc:
        log.error("kb cannot start: %s", exc)
        raise
    app.state.kb = kb
    app.state.jobs = JobRunner(kb)
    secret = app.state.scope_secret = scope_secret(kb.data_dir)
    follower = app.state.webui_follower = deletion_follower(app.state.settings, kb, secret)
    try:
        if follower is not None:
            follower.start()
        yield
    finally:
        if follower is not None:
            follower.close()
        app.state.jobs.close()
        kb.close()


def deletion_follower(
    settings: Settings, kb: KnowledgeBase, secret: str
) -> DeletionFollower | None:
    """What follows deletions in Open WebUI and keeps kb's filter there (signing with
    ``secret``), when kb knows where it is (KB_WEBUI_URL)."""
    admin = admin_from(settings)
    if admin is None:
        return None
    return DeletionFollower(
        kb, admin, settings.webui_reconcile_minutes * 60,
        wire=lambda: admin.ensure_filter(FILTER_SOURCE.read_text(encoding="utf-8"), secret),
    )


def create_app(settings: Settings) -> FastAPI:
    """A kb API app for these settings; the service itself opens in the lifespan."""
    from app.deps import require_api_key

    app = FastAPI(
        title="kb",
        summary="Private RAG knowledge base: ingest PDF/TXT/DOCX, search with citations.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(
        BodyLimit, json_bytes=int(settings.max_request_mb * MB),
        upload_bytes=int(settings.max_upload_mb * MB), file_bytes=settings.max_file_bytes,
    )
    app.add_exception_handler(KbError, kb_error_handler)
    secured = [Depends(require_api_key)]
    for module in (search, answer, chat, documents, jobs, process):
        app.include_router(module.router, dependencies=secured)
    app.include_router(health.router)
    app.include_router(webui.router)  # Open WebUI's webhook: its own token check
    return app


class _StoppingServer(uvicorn.Server):
    """uvicorn's server, which on SIGTERM or Ctrl-C first tells the service to stop, so
    running uploads and jobs roll back and end at once instead of holding the shutdown."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        kb = getattr(self._app.state, "kb", None)
        if kb is not None:
            kb.shutdown()  # only sets an event: safe in a signal handler
        super().handle_exit(sig, frame)


def serve(settings: Settings, host: str, port: int) -> None:
    """Serve the API until SIGTERM or Ctrl-C."""
    app = create_app(settings)
    config = uvicorn.Config(app, host=host, port=port, log_level="info",
                            access_log=settings.access_log, timeout_graceful_shutdown=10)
    _StoppingServer(config, app).run()
