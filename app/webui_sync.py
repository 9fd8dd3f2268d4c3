"""Deletions in Open WebUI reach kb: its events, checked against its API, and reconciling.

Open WebUI posts its events (``file.deleted``, ``knowledge.file.removed`` ...) to
``POST /v1/webui/events`` (its ``WEBHOOK_URL``, which ``kb webui`` and the compose
file set). An event is a hint, never an order: kb asks Open WebUI, signed in as an
admin, whether each file it names still exists, and removes the documents uploaded as
that file only when Open WebUI answers 404. A forged event therefore changes nothing.
Open WebUI sends an event once and never again, and some deletions send none (a
knowledge base reset), so kb also reconciles: at start (waiting until Open WebUI
answers) and every ``KB_WEBUI_RECONCILE_MINUTES``, each document uploaded through Open
WebUI whose file is no longer there is removed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from app.webui_scope import FILTER_ID
from retrieval.errors import ConfigurationError, KbError

log = logging.getLogger(__name__)

PAGE_SIZE = 50  # Open WebUI's file list page
# Events whose subject is a file that may be gone now.
FILE_EVENTS = frozenset({"file.deleted", "knowledge.file.removed"})
# Events that may delete files without naming each one: check them all.
SWEEP_EVENTS = frozenset({
    "file.deleted_all", "knowledge.reset", "knowledge.deleted", "knowledge.directory.deleted",
})
# When Open WebUI has none of this many files kb holds from it, and none of their
# uploaders either, it is another Open WebUI (KB_WEBUI_URL), not everything deleted.
UNKNOWN_INSTANCE_FILES = 20
OWNERS_ASKED = 5


class WebUIUnavailable(KbError):
    """Open WebUI does not answer, or answers with an error."""


class WebUIAdmin:
    """Open WebUI's API as an admin: which of its files exist."""

    def __init__(
        self, url: str, api_key: str | None = None, email: str | None = None,
        password: str | None = None, timeout: float = 10.0,
    ) -> None:
        if not api_key and not (email and password):
            raise ConfigurationError(
                "KB_WEBUI_URL is set but kb cannot sign in to Open WebUI: set KB_WEBUI_API_KEY "
                "(an admin's API key) or KB_WEBUI_ADMIN_EMAIL and KB_WEBUI_ADMIN_PASSWORD"
            )
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout)
        self._email, self._password = email, password
        self._token = api_key

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def exists(self, file_id: str) -> bool:
        """Whether Open WebUI still has this file."""
        response = self._get(f"/api/v1/files/{quote(file_id, safe='')}/process/status")
        if response.status_code == 404:
            return False
        self._check(response)
        return True

    def user_exists(self, user_id: str) -> bool:
        """Whether Open WebUI has this user."""
        response = self._get(f"/api/v1/users/{quote(user_id, safe='')}")
        if response.status_code in (400, 404):  # Open WebUI says 400 for an unknown user
            return False
        self._check(response)
        return True

    def file_ids(self) -> set[str]:
        """The ids of every file Open WebUI has."""
        ids: set[str] = set()
        page = 1
        while True:
            response = self._get("/api/v1/files/", page=page, content="false")
            self._check(response)
            body = response.json()
            items = body.get("items", []) if isinstance(body, dict) else body
            ids.update(str(item["id"]) for item in items)
            if len(items) < PAGE_SIZE:
                return ids
            page += 1

    def ensure_filter(self, source: str, secret: str) -> list[str]:
        """Install kb's Filter function, active and global, with this source and secret;
        what had to change (nothing when it was in place)."""
        path = f"/api/v1/functions/id/{FILTER_ID}"
        body = {"id": FILTER_ID, "name": "kb scope", "content": source,
                "meta": {"description": "what a chat picked, for kb (installed by kb)"}}
        changed = []
        listed = self._call("GET", "/api/v1/functions/")  # (one unknown id answers 401)
        self._check(listed)
        if not any(f.get("id") == FILTER_ID for f in listed.json()):
            self._check(self._call("POST", "/api/v1/functions/create", json=body))
            changed.append("installed the filter")
        else:
            found = self._call("GET", path)
            self._check(found)
            if found.json().get("content") != source:
                self._check(self._call("POST", f"{path}/update", json=body))
                changed.append("updated the filter")
        function = self._call("GET", path)
        self._check(function)
        for flag, toggle in (("is_active", "toggle"), ("is_global", "toggle/global")):
            if not function.json().get(flag):
                self._check(self._call("POST", f"{path}/{toggle}"))
                changed.append(f"turned on {flag.removeprefix('is_')}")
        valves = self._call("GET", f"{path}/valves")
        self._check(valves)
        if (valves.json() or {}).get("secret") != secret:
            update = self._call("POST", f"{path}/valves/update", json={"secret": secret})
            self._check(update)
            changed.append("set the filter's secret")
        return changed

    def _get(self, path: str, **params: Any) -> httpx.Response:
        return self._call("GET", path, params=params)

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in (1, 2):
            if self._token is None:
                self._token = self._sign_in()
            try:
                response = self._http.request(
                    method, path, headers={"Authorization": f"Bearer {self._token}"}, **kwargs
                )
            except httpx.HTTPError as exc:
                raise WebUIUnavailable(f"Open WebUI at {self.url} does not answer: {exc}") from exc
            if response.status_code == 401 and self._email and attempt == 1:
                self._token = None  # the session expired: sign in again
                continue
            return response
        raise AssertionError("unreachable")

    def _sign_in(self) -> str:
        try:
            response = self._http.post(
                "/api/v1/auths/signin", json={"email": self._email, "password": self._password}
            )
        except httpx.HTTPError as exc:
            raise WebUIUnavailable(f"Open WebUI at {self.url} does not answer: {exc}") from exc
        if response.status_code in (400, 401, 403):
            raise WebUIUnavailable(
                f"Open WebUI at {self.url} refused kb's sign-in as {self._email} "
                "(KB_WEBUI_ADMIN_EMAIL, KB_WEBUI_ADMIN_PASSWORD)"
            )
        self._check(response)
        user = response.json()
        if user.get("role") != "admin":
            raise ConfigurationError(
                f"{self._email} is not an admin in Open WebUI: kb needs an admin to see every file"
            )
        return str(user["token"])

    def _check(self, response: httpx.Response) -> None:
        if response.status_code == 401:
            raise WebUIUnavailable(
                f"Open WebUI at {self.url} refused kb's credentials (KB_WEBUI_API_KEY or "
                "KB_WEBUI_ADMIN_EMAIL/PASSWORD)"
            )
        if response.status_code >= 400:
            raise WebUIUnavailable(
                f"Open WebUI at {self.url} answered {response.status_code} to "
                f"{response.request.url.path}"
            )


class Files(Protocol):
    """What the follower needs of the knowledge base."""

    def webui_files(self) -> dict[str, list[Any]]:
        """Open WebUI file id → the documents uploaded as that file."""

    def remove_webui_files(self, file_ids: Iterable[str]) -> list[Any]:
        """Delete the documents uploaded as these files."""


class Checker(Protocol):
    """What the follower needs of Open WebUI."""

    def exists(self, file_id: str) -> bool:
        """Whether the file is still there."""

    def file_ids(self) -> set[str]:
        """Every file id there."""

    def user_exists(self, user_id: str) -> bool:
        """Whether the user is there."""

    def close(self) -> None:
        """Release connections."""


_RECONCILE = "reconcile"


class DeletionFollower:
    """One thread that keeps kb's wiring in Open WebUI and removes what Open WebUI
    deleted: named files as their events come, everything in periodic sweeps."""

    def __init__(
        self, kb: Files, webui: Checker, every_seconds: float,
        retry_seconds: Callable[[int], float] = lambda n: min(15.0, 2.0 * 2**n),
        wire: Callable[[], list[str]] | None = None,
    ) -> None:
        self.kb, self.webui, self.every, self.wire = kb, webui, every_seconds, wire
        self._retry = retry_seconds
        self._work: queue.Queue[str | set[str] | None] = queue.Queue()
        self._stopping = threading.Event()
        self._wake = threading.Event()  # an event arrived: Open WebUI is up, retry at once
        self.reconciled = threading.Event()  # set after the first complete reconcile
        self._thread = threading.Thread(target=self._run, name="webui-deletions", daemon=True)

    def start(self) -> None:
        """Reconcile now (waiting for Open WebUI), then follow events and reconcile now and then."""
        self._work.put(_RECONCILE)
        self._thread.start()

    def close(self) -> None:
        """Stop after the step in progress; close the Open WebUI client."""
        self._stopping.set()
        self._wake.set()
        self._work.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self.webui.close()

    def notify(self, event: dict[str, Any]) -> bool:
        """Take one Open WebUI event; whether it may have deleted anything kb holds."""
        name = str(event.get("event", ""))
        subject = event.get("subject")
        if name in FILE_EVENTS and isinstance(subject, dict) and subject.get("id"):
            self._work.put({str(subject["id"])})
        elif name in SWEEP_EVENTS:
            self._work.put(_RECONCILE)
        else:
            return False
        self._wake.set()
        return True

    def _run(self) -> None:
        next_sweep = time.monotonic() + self.every
        failures, last_error = 0, ""
        while not self._stopping.is_set():
            try:
                item = self._work.get(timeout=max(0.0, next_sweep - time.monotonic()))
            except queue.Empty:
                item = _RECONCILE
            if item is None:
                return
            self._wake.clear()
            try:
                if item == _RECONCILE:
                    self.reconcile()
                    next_sweep = time.monotonic() + self.every
                else:
                    assert isinstance(item, set)
                    self.follow(item)
                failures, last_error = 0, ""
            except Exception as exc:  # noqa: BLE001 - Open WebUI or a store down: retry
                if str(exc) != last_error:  # say each new reason once, not every retry
                    log.warning("cannot reach Open WebUI yet: %s (retrying)", exc)
                    last_error = str(exc)
                self._work.put(item)  # again, after a pause or the next event
                self._wake.wait(self._retry(failures))
                failures += 1

    def follow(self, file_ids: set[str]) -> list[Any]:
        """Remove the documents of those of ``file_ids`` that Open WebUI no longer has."""
        held = self.kb.webui_files()
        gone = {f for f in file_ids if f in held and not self.webui.exists(f)}
        return self._remove(gone, "deleted in Open WebUI")

    def reconcile(self) -> list[Any]:
        """Put kb's wiring back in place if it was lost (``wire``); then remove the
        documents of every file Open WebUI no longer has."""
        if self.wire is not None:
            changes = self.wire()
            if changes:
                log.info("Open WebUI: %s", "; ".join(changes))
        held = self.kb.webui_files()
        there = self.webui.file_ids()
        missing = set(held) - there
        if len(held) >= UNKNOWN_INSTANCE_FILES and missing == set(held):
            owners = sorted({d.owner for docs in held.values() for d in docs if d.owner})
            if not any(self.webui.user_exists(o) for o in owners[:OWNERS_ASKED]):
                raise WebUIUnavailable(
                    f"Open WebUI knows none of the {len(held)} files kb holds from it, nor "
                    "who uploaded them: is KB_WEBUI_URL the Open WebUI that uploaded them? "
                    "Nothing was removed"
                )
        # Listed pages can shift while files come and go: ask for each one.
        removed = self._remove({f for f in missing if not self.webui.exists(f)}, "reconciled")
        self.reconciled.set()
        return removed

    def _remove(self, file_ids: set[str], why: str) -> list[Any]:
        if not file_ids:
            return []
        docs = self.kb.remove_webui_files(file_ids)
        log.info("removed %d document(s) of %d Open WebUI file(s) %s",
                 len(docs), len(file_ids), why)
        return docs
