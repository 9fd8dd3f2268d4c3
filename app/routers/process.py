"""Open WebUI's external document loader: ``PUT /process`` with the raw file."""

from __future__ import annotations

import asyncio
import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from app.deps import ROLE_HEADER, KbDep, SettingsDep, ViewerDep
from app.errors import status_for
from app.service import WEBUI_SCHEME, KnowledgeBase
from app.settings import MB, Settings
from ingest.pipeline import FAILED
from retrieval.errors import KbError

router = APIRouter(tags=["open-webui"])


@router.put("/process", response_model=None)
async def process(
    request: Request, kb: KbDep, settings: SettingsDep, owner: ViewerDep
) -> dict[str, Any] | PlainTextResponse:
    """Ingest one file sent by Open WebUI and return its text; a failure is a 4xx with the reason.

    Errors are plain text: Open WebUI shows the body to the user as it is.

    The document is keyed by ``X-File-Id`` (set it in EXTERNAL_DOCUMENT_LOADER_HEADERS as
    ``{{FILE_ID}}``) so a re-upload replaces it. It is private to the uploader named in
    X-OpenWebUI-User-Id, or shared when no user is named (or the uploader is an admin
    and KB_SHARE_ADMIN_UPLOADS is on).
    """
    try:
        return await _process(request, kb, settings, owner)
    except HTTPException as exc:
        return PlainTextResponse(str(exc.detail), exc.status_code)
    except KbError as exc:
        return PlainTextResponse(str(exc), status_for(exc))


async def _process(
    request: Request, kb: KnowledgeBase, settings: Settings, owner: str | None
) -> dict[str, Any]:
    name = Path(unquote(request.headers.get("x-filename", "")) or "document").name
    file_id = request.headers.get("x-file-id", "")
    if settings.share_admin_uploads and request.headers.get(ROLE_HEADER) == "admin":
        owner = None  # KB_SHARE_ADMIN_UPLOADS: admins curate the shared knowledge
    if file_id and name.startswith(f"{file_id}_"):
        name = name[len(file_id) + 1 :]  # Open WebUI stores uploads as "<file id>_<name>"
    path = await _receive(request, kb.uploads_dir, settings.max_file_bytes)
    cancel = threading.Event()  # the client hung up, or the server is stopping
    watcher = asyncio.create_task(_watch_disconnect(request, cancel))
    try:
        scheme, ref = (WEBUI_SCHEME, file_id) if file_id else ("upload", name)
        source = kb.upload_source(scheme, ref, name, path, owner)
        outcome, text = await run_in_threadpool(kb.upload, source, cancel)
        if outcome.status == FAILED or text is None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{name}: {outcome.error}")
    finally:
        cancel.set()
        watcher.cancel()
        path.unlink(missing_ok=True)
    return {
        "page_content": text,
        "metadata": {
            "source": name,
            "name": name,
            "document_id": outcome.document_id,
            "chunks": outcome.chunks,
            "status": outcome.status,
            "file_id": file_id or None,
            "owner": owner,
        },
    }


async def _receive(request: Request, folder: Path, max_bytes: int) -> Path:
    """Stream the body to a temporary file, refusing it (413) at the first byte over the limit."""
    folder.mkdir(parents=True, exist_ok=True)
    size = 0
    with tempfile.NamedTemporaryFile(dir=folder, prefix="process-", delete=False) as out:
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise HTTPException(
                        status.HTTP_413_CONTENT_TOO_LARGE,
                        f"file is over the limit of {max_bytes / MB:.0f} MB",
                    )
                out.write(chunk)
        except BaseException:
            Path(out.name).unlink(missing_ok=True)
            raise
    return Path(out.name)


async def _watch_disconnect(request: Request, cancel: threading.Event) -> None:
    """Set ``cancel`` when the client goes away: its upload is then rolled back."""
    while not cancel.is_set():
        if await request.is_disconnected():
            cancel.set()
            return
        await asyncio.sleep(0.5)
