"""Helpers shared by the loader tests."""

from __future__ import annotations

from pathlib import Path

from ingest.loaders import DEFAULT_LIMITS, Limits, load
from retrieval.types import Segment


def load_file(
    path: Path, name: str | None = None, limits: Limits = DEFAULT_LIMITS
) -> list[Segment]:
    """Load a file from disk through ``load``, consuming every segment."""
    with path.open("rb") as stream:
        return list(load(stream, name or path.name, limits))


def assert_offsets(segments: list[Segment], separator: str) -> None:
    """Each segment's offset is where it starts in the segments joined with ``separator``."""
    expected = 0
    for segment in segments:
        assert segment.offset == expected
        expected += len(segment.text) + len(separator)
