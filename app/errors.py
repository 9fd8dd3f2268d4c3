"""How domain errors map to HTTP status codes."""

from __future__ import annotations

from retrieval.errors import (
    Cancelled,
    ConfigurationError,
    DataDirBusy,
    DocumentNotFound,
    InvalidDocument,
    KbError,
    LimitExceeded,
    UnsupportedFileType,
    UpstreamUnavailable,
)

# Most specific first: the first matching class decides the status code.
STATUS_BY_ERROR: list[tuple[type[KbError], int]] = [
    (LimitExceeded, 413),
    (UnsupportedFileType, 415),
    (InvalidDocument, 422),
    (DocumentNotFound, 404),
    (UpstreamUnavailable, 503),
    (DataDirBusy, 503),
    (Cancelled, 503),
    (ConfigurationError, 409),
]


def status_for(error: KbError) -> int:
    """HTTP status for a domain error."""
    return next((code for cls, code in STATUS_BY_ERROR if isinstance(error, cls)), 500)
