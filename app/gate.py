"""A readers-writer gate: many uploads write at once; a re-index runs alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ingest.workers import Cancel, never
from retrieval.errors import Cancelled


class Gate:
    """Shared entry for ingests and deletes, exclusive entry for a re-index.

    A waiting re-index stops new shared entries, so a stream of uploads cannot
    starve it; it then waits only for the runs already inside.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._inside = 0
        self._exclusive = False
        self._waiting = 0

    @contextmanager
    def shared(self, cancelled: Cancel = never) -> Iterator[None]:
        """Enter alongside other shared holders; raise Cancelled if told to while waiting."""
        with self._changed:
            while self._exclusive or self._waiting:
                if cancelled():
                    raise Cancelled("cancelled while waiting for a re-index to finish")
                self._changed.wait(0.2)
            self._inside += 1
        try:
            yield
        finally:
            with self._changed:
                self._inside -= 1
                self._changed.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until no one is inside (used at shutdown); False if ``timeout`` ran out."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._inside or self._exclusive:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Enter alone, once every shared holder has left."""
        with self._changed:
            self._waiting += 1
            while self._exclusive or self._inside:
                self._changed.wait()
            self._waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._changed:
                self._exclusive = False
                self._changed.notify_all()
