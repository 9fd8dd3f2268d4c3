"""
title: kb scope
author: kb
description: Tells kb what a chat picked and what is shared with the asker (installed by kb)
version: 1
"""

# This file runs inside Open WebUI (0.12.4), not in kb: kb uploads its text as a
# global Filter function. It reads Open WebUI's own tables, so what kb is told
# is exactly what Open WebUI lets the user open.

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from pydantic import BaseModel, Field

SCOPE_FIELD = "kb_scope"
LIFETIME_SECONDS = 300


class Filter:
    """Pass the chat's selection on to kb, signed with the secret kb set in the valves."""

    class Valves(BaseModel):
        """Set by kb."""

        secret: str = Field(default="", description="kb's key for signing the scope")
        priority: int = Field(default=0, description="filter order")

    def __init__(self) -> None:
        self.valves = self.Valves()
        # kb searches the picked files itself: Open WebUI need not put their text in the chat.
        self.file_handler = True

    async def inlet(self, body: dict, __user__: dict | None = None) -> dict:
        """Replace whatever ``kb_scope`` the request carried with a signed, checked one."""
        body.pop(SCOPE_FIELD, None)  # nobody but this filter says what a chat picked
        if not __user__ or not self.valves.secret:
            return body
        user_id, admin = str(__user__["id"]), __user__.get("role") == "admin"
        knowledge, files = _picked(body.get("files") or [])
        claim: dict[str, Any] = {
            "user": user_id,
            "exp": int(time.time()) + LIFETIME_SECONDS,
            "granted": await _shared_with(user_id),
            "picked": None,
        }
        if knowledge or files:
            claim["picked"] = await _readable(user_id, admin, knowledge, files)
        text = json.dumps(claim, separators=(",", ":"), sort_keys=True)
        signature = hmac.new(self.valves.secret.encode(), text.encode(), hashlib.sha256)
        body[SCOPE_FIELD] = {"claim": text, "sig": signature.hexdigest()}
        return body


def _picked(items: list[Any]) -> tuple[list[str], list[str]]:
    """Knowledge base ids and file ids among a chat's ``files``."""
    knowledge, files = [], []
    for item in items:
        if not isinstance(item, dict) or not item.get("id"):
            continue
        if item.get("type") == "collection":
            knowledge.append(str(item["id"]))
        elif item.get("type") == "file":
            files.append(str(item["id"]))
    return knowledge, files


async def _readable(
    user_id: str, admin: bool, knowledge: list[str], files: list[str]
) -> list[list[str | None]]:
    """[file id, uploader] of the picked files and of the picked knowledge bases' files
    that the user may read; anything else picked (a crafted or stale id) is left out."""
    from open_webui.models.knowledge import Knowledges
    from open_webui.models.users import Users
    from open_webui.utils.access_control.files import has_access_to_file

    readable = [
        k for k in knowledge
        if admin or await Knowledges.check_access_by_user_id(k, user_id, permission="read")
    ]
    out = await _files_of(readable)
    user = await Users.get_user_by_id(user_id)
    for file_id, owner in await _uploaders(files):
        if owner == user_id or admin or (
            user is not None and await has_access_to_file(file_id, "read", user)
        ):
            out.append([file_id, owner])
    return out


async def _shared_with(user_id: str) -> list[list[str | None]]:
    """[file id, uploader] of the files in knowledge bases other users shared with this
    one (their own grant, a group's, or everyone's), uploaded by someone else."""
    from open_webui.internal.db import get_async_db_context
    from open_webui.models.access_grants import AccessGrants
    from open_webui.models.knowledge import Knowledge
    from sqlalchemy import select

    async with get_async_db_context() as db:
        rows = (await db.execute(select(Knowledge.id, Knowledge.user_id))).all()
    others = [k for k, owner in rows if owner != user_id]
    shared = await AccessGrants.get_accessible_resource_ids(user_id, "knowledge", others, "read")
    return [f for f in await _files_of(sorted(shared)) if f[1] != user_id]


async def _files_of(knowledge: list[str]) -> list[list[str | None]]:
    """[file id, uploader] of every file in these knowledge bases."""
    if not knowledge:
        return []
    from open_webui.internal.db import get_async_db_context
    from open_webui.models.files import File
    from open_webui.models.knowledge import KnowledgeFile
    from sqlalchemy import select

    query = (
        select(File.id, File.user_id)
        .join(KnowledgeFile, File.id == KnowledgeFile.file_id)
        .where(KnowledgeFile.knowledge_id.in_(knowledge))
    )
    async with get_async_db_context() as db:
        rows = (await db.execute(query)).all()
    return [[f, u] for f, u in sorted({(str(f), str(u) if u else None) for f, u in rows})]


async def _uploaders(files: list[str]) -> list[tuple[str, str | None]]:
    """(file id, uploader) of the files that exist."""
    if not files:
        return []
    from open_webui.internal.db import get_async_db_context
    from open_webui.models.files import File
    from sqlalchemy import select

    async with get_async_db_context() as db:
        rows = (await db.execute(select(File.id, File.user_id).where(File.id.in_(files)))).all()
    return [(str(f), str(u) if u else None) for f, u in rows]
