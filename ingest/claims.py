"""Which documents a running ingest is writing, so two uploads of one document take turns."""

from __future__ import annotations

import threading

from ingest.workers import POLL_SECONDS, Cancel, never
from retrieval.errors import Cancelled


class Claims:
    """Document ids that some run is writing; another run waits for them to be released."""

    def __init__(self) -> None:
        self._held: dict[str, object] = {}
        self._changed = threading.Condition()

    def claim(self, document_id: str, holder: object, cancelled: Cancel = never) -> None:
        """Take ``document_id`` for ``holder``, waiting while another holder has it."""
        with self._changed:
            while self._held.get(document_id, holder) is not holder:
                if cancelled():
                    raise Cancelled("cancelled while another upload wrote the same document")
                self._changed.wait(POLL_SECONDS)
            self._held[document_id] = holder

    def release(self, document_id: str, holder: object) -> None:
        """Let other runs write ``document_id`` (only if ``holder`` has it)."""
        with self._changed:
            if self._held.get(document_id) is holder:
                del self._held[document_id]
                self._changed.notify_all()

    def release_all(self, holder: object) -> None:
        """Release everything ``holder`` still has (a run that ended early)."""
        with self._changed:
            for document_id in [d for d, h in self._held.items() if h is holder]:
                del self._held[document_id]
            self._changed.notify_all()
