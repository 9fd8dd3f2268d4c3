"""Document loaders: sniff a file's type, then stream its text as ``Segment``s.

``load`` is the entry point. It checks the size limit, detects the type from the
name and the first bytes, and dispatches through ``LOADERS``. Bad input raises
only ``InvalidDocument`` subclasses, possibly lazily while iterating.

Offsets: a document's whole text is its segments joined with ``"\\n\\n"`` for
PDF and DOCX (pages and blocks), and joined with nothing for text files (their
segments are consecutive slices of the decoded text).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from ingest.loaders import text
from ingest.loaders.docx import OLE2_MAGIC, load_docx
from ingest.loaders.image import load_image
from ingest.loaders.pdf import load_pdf
from ingest.ocr import OcrSettings, Reader
from retrieval.errors import ExtractionFailed, InvalidDocument, LimitExceeded, UnsupportedFileType
from retrieval.types import Segment

PARSER_VERSION = "1"  # bump when extraction output changes, so stored documents get re-parsed
HEAD_BYTES = 8 * 1024


@dataclass(frozen=True)
class Limits:
    """Per-document limits on input size and extracted text."""

    max_file_bytes: int = 256 * 2**20
    max_docx_uncompressed_bytes: int = 512 * 2**20  # zip-bomb guard
    max_docx_elements: int = 2_000_000  # element-bomb guard: python-docx's tree size
    max_docx_depth: int = 100
    max_pages: int = 5000
    max_chars: int = 300_000_000  # extracted characters per document


DEFAULT_LIMITS = Limits()

SUPPORTED_EXTENSIONS: dict[str, str] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".txt": "txt",
    ".text": "txt",
    ".md": "txt",
    ".markdown": "txt",
    ".png": "image",
    ".jpg": "image",
    ".jpeg": "image",
    ".tif": "image",
    ".tiff": "image",
}
MARKDOWN_EXTENSIONS = frozenset({".md", ".markdown"})
_LABELS = {"pdf": "PDF", "docx": "DOCX", "txt": "text file", "image": "image"}
SUPPORTED = "PDF, DOCX, TXT, Markdown, PNG, JPEG, TIFF"

LOADERS: dict[str, Callable[[BinaryIO, Limits], Iterator[Segment]]] = {
    "docx": load_docx,
    "txt": text.load_text,
}
# Loaders of paged documents, which may need OCR.
PAGED_LOADERS: dict[str, Callable[[BinaryIO, Limits, Reader], Iterator[Segment]]] = {
    "pdf": load_pdf,
    "image": load_image,
}

_OLE2 = "an OLE2 file (legacy .doc/.xls/.ppt)"
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"PK\x05\x06", "a ZIP archive"),
    (b"\x1f\x8b", "a GZIP archive"),
    (b"\x7fELF", "an ELF executable"),
    (OLE2_MAGIC, _OLE2),
    (b"{\\rtf", "an RTF document"),
)
# Control bytes that do not occur in text (tab, newlines, form feed and escape are allowed).
_CONTROL_BYTES = bytes(set(range(32)) - {8, 9, 10, 11, 12, 13, 27})


def _looks_like_text(head: bytes) -> bool:
    """True when ``head`` decodes as text: a UTF-16/32 layout, or few control bytes."""
    if text.bom_encoding(head) or text.sniff_utf16(head) or text.sniff_han_utf16(head):
        return True
    controls = sum(head.count(byte) for byte in _CONTROL_BYTES)
    return controls <= len(head) // 100


def sniff(head: bytes) -> str:
    """Describe what the first bytes of a file look like: "a PDF document", "text", ..."""
    if b"%PDF-" in head[:1024]:
        return "a PDF document"
    for magic, description in _MAGIC:
        if head.startswith(magic):
            return description
    if head.startswith(b"MZ") and b"\x00" in head[:64]:
        return "a Windows executable"
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:64].lower()
    if start.startswith((b"<!doctype html", b"<html")):
        return "an HTML page"
    return "text" if _looks_like_text(head) else "binary data"


def _split_name(name: str) -> tuple[str, str]:
    """Base name (for messages) and lower-case extension of an uploaded file name."""
    base = os.path.basename(name.replace("\\", "/"))
    return base, os.path.splitext(base)[1].lower()


def detect_type(name: str, head: bytes) -> str:
    """Return "pdf", "docx", "txt" or "image" for a file, from its name and first bytes."""
    base, extension = _split_name(name)
    if extension not in SUPPORTED_EXTENSIONS:
        found = f"{extension} files are" if extension else f"{base} has no extension and is"
        raise UnsupportedFileType(
            f"unsupported type: {found} not supported (supported: {SUPPORTED})"
        )
    expected = SUPPORTED_EXTENSIONS[extension]
    if not head:
        return expected  # empty: the caller reports that, not a type mismatch
    found = sniff(head)
    accepted = {
        "pdf": {"a PDF document"},
        # An OLE2 file named .docx is usually an encrypted DOCX; its loader says so.
        "docx": {"a ZIP archive", _OLE2},
        "txt": {"text"},
        "image": {"a PNG image", "a JPEG image", "a TIFF image"},
    }[expected]
    if found not in accepted:
        content = "plain text" if found == "text" else found
        raise UnsupportedFileType(
            f"unsupported type: {base} is named {extension} but its content is {content}; "
            f"upload a real file of a supported type ({SUPPORTED})"
        )
    return expected


def _file_size(stream: BinaryIO) -> int:
    """Size of a seekable stream; leaves it at the start."""
    size = stream.seek(0, os.SEEK_END)
    stream.seek(0)
    return size


def _guarded(segments: Iterator[Segment], kind: str) -> Iterator[Segment]:
    """Turn library crashes on bad input into ExtractionFailed; insist on some text."""
    found_text = False
    try:
        for segment in segments:
            found_text = found_text or bool(segment.text.strip())
            yield segment
    except (InvalidDocument, OSError, MemoryError):
        raise
    except Exception as exc:  # parsers raise arbitrary exception types on malformed input
        detail = f"{type(exc).__name__}: {exc}"[:300]
        raise ExtractionFailed(
            f"damaged or unreadable {_LABELS[kind]}: {detail}; "
            "open it in the program that made it and save it again"
        ) from exc
    if not found_text:
        raise ExtractionFailed(
            "no extractable text: the file holds only whitespace, images or formatting; "
            "check that it is the right file"
        )


def load(
    stream: BinaryIO, name: str, limits: Limits = DEFAULT_LIMITS, reader: Reader | None = None
) -> Iterator[Segment]:
    """Detect a file's type and stream its text as segments; raise InvalidDocument if bad.

    ``reader`` reads pages that need OCR and counts the pages of a paged document.
    """
    size = _file_size(stream)
    if size > limits.max_file_bytes:
        raise LimitExceeded(
            f"file is {size / 2**20:.1f} MB, over the limit of "
            f"{limits.max_file_bytes / 2**20:.1f} MB; split it into smaller files"
        )
    kind = detect_type(name, stream.read(HEAD_BYTES))
    stream.seek(0)
    if size == 0:
        raise ExtractionFailed("empty file: it has no content; check that the upload completed")
    if kind in PAGED_LOADERS:
        raw = PAGED_LOADERS[kind](stream, limits, reader or Reader(OcrSettings()))
    else:
        raw = LOADERS[kind](stream, limits)
    segments = _guarded(raw, kind)
    if _split_name(name)[1] in MARKDOWN_EXTENSIONS:
        return text.markdown_sections(segments)
    return segments
