"""Request body limits, for every route: a JSON body, an upload, a file sent to /process.

The limit is checked against ``Content-Length`` before anything is read, and
counted as the body streams in (a chunked request has no length), so an
oversized request costs at most one limit's worth of reading.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import HTTPException, status

from app.settings import MB

Scope = dict[str, Any]


class BodyLimit:
    """ASGI middleware: 413 for a body over its route's limit."""

    def __init__(self, app: Any, *, json_bytes: int, upload_bytes: int, file_bytes: int) -> None:
        self.app = app
        self.json_bytes, self.upload_bytes, self.file_bytes = json_bytes, upload_bytes, file_bytes

    def limit(self, scope: Scope) -> tuple[int, str]:
        """The byte limit for this request, and the setting that raises it."""
        if scope["path"] == "/v1/documents" and scope["method"] == "POST":
            return self.upload_bytes, "KB_MAX_UPLOAD_MB"
        if scope["path"] == "/process":
            return self.file_bytes, "KB_MAX_FILE_MB"
        return self.json_bytes, "KB_MAX_REQUEST_MB"

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self.limit(scope)
        message = f"request body is over the limit of {limit / MB:.0f} MB ({setting})"
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            await _refuse(send, message)
            return
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            event = await receive()
            seen += len(event.get("body", b""))
            if seen > limit:
                raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, message)
            return event

        await self.app(scope, counted, send)


async def _refuse(send: Any, message: str) -> None:
    body = json.dumps({"detail": message}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
