"""PDF: text page by page with pypdf, one or more segments per page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from pypdf import PasswordType, PdfReader

from ingest.loaders.text import normalise_newlines, split_text
from retrieval.errors import ExtractionFailed, LimitExceeded
from retrieval.types import Segment

if TYPE_CHECKING:
    from ingest.loaders import Limits

PAGE_SEPARATOR = "\n\n"

_SPACES = re.compile(r"[ \t]+")
_SPACE_AROUND_NEWLINE = re.compile(r" ?\n ?")
_BLANK_LINES = re.compile(r"\n{3,}")


def normalise_page(text: str) -> str:
    """Clean one page of extracted text: newlines, NULs, runs of spaces, blank lines."""
    text = _SPACES.sub(" ", normalise_newlines(text))
    text = _SPACE_AROUND_NEWLINE.sub("\n", text)
    return _BLANK_LINES.sub("\n\n", text).strip()


def open_pdf(stream: BinaryIO) -> PdfReader:
    """Open a PDF for reading, decrypting it if its user password is empty."""
    try:
        # strict=False: pypdf repairs common damage (bad xref offsets) instead of failing.
        reader = PdfReader(stream, strict=False)
        locked = reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED
    except (OSError, MemoryError):
        raise
    except Exception as exc:  # pypdf raises many exception types on malformed input
        raise ExtractionFailed(
            f"damaged PDF: it cannot be parsed ({type(exc).__name__}: {exc}); "
            "open it in a PDF viewer and save or print it to a new PDF"
        ) from exc
    if locked:
        raise ExtractionFailed(
            "encrypted PDF: it needs a password; remove the protection and upload it again"
        )
    return reader


def load_pdf(stream: BinaryIO, limits: Limits) -> Iterator[Segment]:
    """Stream a PDF's text as segments tagged with their 1-based page number."""
    reader = open_pdf(stream)
    pages = len(reader.pages)
    if pages > limits.max_pages:
        raise LimitExceeded(
            f"PDF has {pages} pages, over the limit of {limits.max_pages}; "
            "split it into smaller files"
        )
    offset = 0
    for number, page in enumerate(reader.pages, start=1):
        for piece in split_text(normalise_page(page.extract_text())):
            if offset:
                offset += len(PAGE_SEPARATOR)
            if offset + len(piece) > limits.max_chars:
                raise LimitExceeded(
                    f"PDF has more than {limits.max_chars:,} characters of text, over the "
                    "limit; split it into smaller files"
                )
            yield Segment(piece, offset, page=number)
            offset += len(piece)
    if not offset:
        raise ExtractionFailed(
            f"no extractable text — scanned document? (PDF has {pages} "
            f"page{'' if pages == 1 else 's'} but no text layer; OCR it first)"
        )
