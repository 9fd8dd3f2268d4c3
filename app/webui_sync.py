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

from app.webui_client import WebUIUnavailable

log = logging.getLogger(__name__)

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
