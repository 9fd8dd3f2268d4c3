"""Open WebUI's event webhook: deletions there reach kb (see ``app.webui_sync``)."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Body, HTTPException, Request, status

from app.deps import SettingsDep

router = APIRouter(prefix="/v1/webui", tags=["open-webui"])


@router.post("/events", status_code=status.HTTP_202_ACCEPTED)
def events(
    request: Request, settings: SettingsDep, event: dict[str, Any] = Body(...)  # noqa: B008
) -> dict[str, Any]:
    """Take one Open WebUI event; what it names is checked against Open WebUI, then removed.

    Open WebUI's webhooks carry no secret header, so the key comes as ``?token=``
    (``kb webui`` and the compose file put it in ``WEBHOOK_URL``); a bearer header works too.
    """
    key = settings.api_key
    if key is not None:
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        given = request.query_params.get("token") or (bearer if scheme.lower() == "bearer" else "")
        if not secrets.compare_digest(given.strip().encode(), key.get_secret_value().encode()):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong token")
    follower = getattr(request.app.state, "webui_follower", None)
    if follower is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "kb does not follow Open WebUI: set KB_WEBUI_URL and an admin's credentials",
        )
    return {"followed": follower.notify(event)}
