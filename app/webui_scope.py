"""What a chat in Open WebUI may search: the signed scope kb's Filter function sends.

Open WebUI strips a chat's picked knowledge bases and files from the request it
sends kb; kb's global Filter function (``app/webui_filter.py``, installed by kb)
sees them first, keeps only what Open WebUI lets the user read, adds the files
of knowledge bases shared with the user, and signs the result with a secret
only kb and the filter know (``KB_DATA_DIR/webui-scope.key``). A request can
reach kb without passing the filter (Open WebUI's ``/openai`` proxy route, or a
crafted body), so kb uses a scope only when its signature, its user and its
age check out; otherwise the question searches what it would without one (the
shared documents and the asker's own), never more.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCOPE_FIELD = "kb_scope"  # the request field the filter writes
FILTER_ID = "kb_scope"  # the Filter function's id in Open WebUI
FILTER_SOURCE = Path(__file__).with_name("webui_filter.py")
KEY_FILE = "webui-scope.key"

File = tuple[str, str | None]  # an Open WebUI file id and its uploader


@dataclass(frozen=True)
class ChatScope:
    """What one question may search, as Open WebUI decided it."""

    picked: list[File] | None  # what the chat picked (readable), or None: nothing picked
    granted: list[File]  # files of knowledge bases shared with the asker


def scope_secret(data_dir: Path) -> str:
    """The signing secret, made once and kept in the data directory (owner-only)."""
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip()


def verify(
    scope: Any, secret: str, viewer: str | None, now: float | None = None
) -> ChatScope | None:
    """The scope, if the filter signed it for this viewer recently; else ``None``."""
    if not isinstance(scope, dict) or viewer is None:
        return None
    claim, signature = scope.get("claim"), scope.get("sig")
    if not isinstance(claim, str) or not isinstance(signature, str):
        return None
    expected = hmac.new(secret.encode(), claim.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        log.warning("a chat scope with a wrong signature was ignored (is kb's filter in "
                    "Open WebUI up to date? `kb webui --check`)")
        return None
    data = json.loads(claim)
    if data.get("user") != viewer or float(data.get("exp", 0)) < (now or time.time()):
        log.warning("a chat scope for another user or past its time was ignored")
        return None
    picked = data.get("picked")
    return ChatScope(
        None if picked is None else [_file(f) for f in picked],
        [_file(f) for f in data.get("granted") or []],
    )


def _file(pair: Any) -> File:
    file_id, owner = pair
    return str(file_id), (str(owner) if owner else None)
