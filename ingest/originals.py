"""Stored originals: every ingested file is kept, content-addressed, for re-indexing."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from retrieval.errors import LimitExceeded

BLOCK = 1 << 20


class Originals:
    """Files under ``root/<hash[:2]>/<hash>``; identical content is stored once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, content_hash: str) -> Path:
        """Where the original with this hash is (or would be) stored."""
        return self.root / content_hash[:2] / content_hash

    def put(self, source: Path, max_bytes: int) -> tuple[str, int, Path]:
        """Copy ``source`` in while hashing it once; returns (sha256, size, stored path)."""
        size = source.stat().st_size
        if size > max_bytes:
            raise LimitExceeded(
                f"file is {size / 2**20:.1f} MB, over the limit of {max_bytes / 2**20:.0f} MB"
                " (KB_MAX_FILE_MB)"
            )
        if source.parent.parent == self.root and len(source.name) == 64:
            return source.name, size, source  # already stored (re-index)
        digest = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                while block := src.read(BLOCK):
                    digest.update(block)
                    out.write(block)
            target = self.path(digest.hexdigest())
            target.parent.mkdir(exist_ok=True)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest.hexdigest(), size, target

    def discard(self, content_hash: str) -> None:
        """Delete a stored original (callers check nothing else uses it)."""
        if content_hash:  # a file refused before it was stored has none
            self.path(content_hash).unlink(missing_ok=True)

    def sweep_incoming(self) -> None:
        """Remove partial copies left by an interrupted ingest."""
        for leftover in self.root.glob(".incoming-*"):
            leftover.unlink(missing_ok=True)
