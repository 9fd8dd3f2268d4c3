"""Request dependencies: the service objects built in the lifespan, and auth.

All are ``async def``: they do no I/O, and FastAPI would run a plain ``def``
dependency on the thread pool, a hop per dependency per request.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from app.jobs import JobRunner
from app.service import KnowledgeBase
from app.settings import Settings


async def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


async def get_kb(request: Request) -> KnowledgeBase:
    """The knowledge base opened at start-up."""
    kb: KnowledgeBase = request.app.state.kb
    return kb


async def get_jobs(request: Request) -> JobRunner:
    """The background job runner."""
    jobs: JobRunner = request.app.state.jobs
    return jobs


async def require_api_key(request: Request) -> None:
    """When KB_API_KEY is set, every API call needs ``Authorization: Bearer <key>``."""
    key = (await get_settings(request)).api_key
    if key is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(
        token.strip().encode(), key.get_secret_value().encode()
    ):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or wrong API key: send 'Authorization: Bearer <KB_API_KEY>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


USER_HEADER = "x-openwebui-user-id"  # sent by Open WebUI with ENABLE_FORWARD_USER_INFO_HEADERS
ROLE_HEADER = "x-openwebui-user-role"  # likewise: "admin", "user"


async def get_viewer(request: Request) -> str | None:
    """Who is asking, as Open WebUI forwards it; ``None`` (shared documents only) when unsaid.

    The header is trusted because only holders of the API key reach the API.
    """
    return request.headers.get(USER_HEADER, "").strip() or None


SettingsDep = Annotated[Settings, Depends(get_settings)]
KbDep = Annotated[KnowledgeBase, Depends(get_kb)]
JobsDep = Annotated[JobRunner, Depends(get_jobs)]
ViewerDep = Annotated[str | None, Depends(get_viewer)]
