"""PDF: text page by page with pypdf, one or more segments per page.

A page without a usable text layer (a scan, a photo printed to PDF) is rendered
with PDFium and read by OCR (``ingest.ocr``); its segments say so. Pages with text
keep their text layer, so a mixed document is read both ways with exact page numbers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from pypdf import PasswordType, PdfReader

from ingest.loaders.text import normalise_newlines, split_text
from ingest.ocr import Reader, render_scale
from retrieval.errors import ExtractionFailed, LimitExceeded
from retrieval.types import Segment

if TYPE_CHECKING:
    import pypdfium2
    from PIL.Image import Image

    from ingest.loaders import Limits

PAGE_SEPARATOR = "\n\n"

_SPACES = re.compile(r"[ \t]+")
_SPACE_AROUND_NEWLINE = re.compile(r" ?\n ?")
_BLANK_LINES = re.compile(r"\n{3,}")
# A page needs OCR when its text layer has fewer characters than this (a scan often
# carries a stamped page number), or fewer than SCANT_TEXT while images cover most of it.
NO_TEXT, SCANT_TEXT, IMAGE_COVER = 16, 200, 0.5


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


def load_pdf(stream: BinaryIO, limits: Limits, reader: Reader) -> Iterator[Segment]:
    """Stream a PDF's text as segments tagged with their 1-based page number."""
    pdf = open_pdf(stream)
    pages = len(pdf.pages)
    if pages > limits.max_pages:
        raise LimitExceeded(
            f"PDF has {pages} pages, over the limit of {limits.max_pages}; "
            "split it into smaller files"
        )
    reader.counts.pages = pages
    scans: _Scans | None = None  # opened at the first page without enough text
    offset = unread = 0
    for number, page in enumerate(pdf.pages, start=1):
        text, ocr = normalise_page(page.extract_text()), False
        if _letters(text) < SCANT_TEXT:
            scans = scans or _Scans(stream, number, reader)
            if not scans.needs_ocr(number, _letters(text)):
                pass
            elif reader.settings.enabled:
                text, ocr = normalise_page(reader.read(scans.render(number), number)), True
            else:
                unread += 1
        if not text:
            reader.counts.blank += 1
        for piece in split_text(text):
            if offset:
                offset += len(PAGE_SEPARATOR)
            if offset + len(piece) > limits.max_chars:
                raise LimitExceeded(
                    f"PDF has more than {limits.max_chars:,} characters of text, over the "
                    "limit; split it into smaller files"
                )
            yield Segment(piece, offset, page=number, ocr=ocr)
            offset += len(piece)
    if scans is not None:
        scans.close()
    if not offset:
        raise ExtractionFailed(_no_text(pages, reader, unread))


def _no_text(pages: int, reader: Reader, unread: int) -> str:
    plural = "" if pages == 1 else "s"
    if unread:
        return (
            f"no extractable text — scanned document? (PDF has {pages} page{plural} but no "
            "text layer, and OCR is off: set KB_OCR=auto to read scans)"
        )
    if reader.counts.ocr:
        return (
            f"no extractable text: the PDF's {pages} page{plural} have no text layer and OCR "
            f"found no text on {reader.counts.ocr} scanned page"
            f"{'' if reader.counts.ocr == 1 else 's'} (blank, or too faint to read); "
            "check the scan"
        )
    return (
        f"no extractable text: the PDF has {pages} blank page{plural} (no text layer and "
        "nothing drawn); check that it is the right file"
    )


def _letters(text: str) -> int:
    return len(text) - text.count(" ") - text.count("\n")


class _Scans:
    """The PDF opened a second time, with PDFium: which pages need OCR, and their images.

    Opened only when a page lacks text, so text PDFs never pay for it. On opening it
    counts the pages from ``first`` on that need OCR, so a scan over the OCR page budget
    fails at once rather than after hours of reading.
    """

    def __init__(self, stream: BinaryIO, first: int, reader: Reader) -> None:
        import pypdfium2

        name = getattr(stream, "name", None)
        if isinstance(name, str):
            source: str | bytes = name
        else:
            stream.seek(0)
            source = stream.read()
        try:
            self.pdf = pypdfium2.PdfDocument(source)
        except pypdfium2.PdfiumError as exc:
            raise ExtractionFailed(
                f"damaged PDF: its pages cannot be rendered for OCR ({exc}); "
                "open it in a PDF viewer and save or print it to a new PDF"
            ) from exc
        self.reader = reader
        if reader.settings.enabled:
            needed = sum(
                self._needs_ocr(self.pdf[index], None) for index in range(first - 1, len(self.pdf))
            )
            if needed > reader.settings.max_pages:
                raise reader.settings.pages_error(needed)

    def needs_ocr(self, number: int, letters: int) -> bool:
        """Whether page ``number`` (with ``letters`` of text layer) is read by OCR."""
        return self._needs_ocr(self.pdf[number - 1], letters)

    def render(self, number: int) -> Image:
        """Page ``number`` as a grey-scale PIL image at the OCR resolution."""
        page = self.pdf[number - 1]
        width, height = page.get_size()
        scale = render_scale(width, height, self.reader.settings.dpi)
        return page.render(scale=scale, grayscale=True).to_pil()

    def close(self) -> None:
        self.pdf.close()

    @staticmethod
    def _needs_ocr(page: pypdfium2.PdfPage, letters: int | None) -> bool:
        import pypdfium2.raw as pdfium_c

        if letters is None:  # counting ahead: PDFium's own reading of the text layer
            text = page.get_textpage().get_text_range()
            letters = _letters(normalise_page(text))
        if letters >= SCANT_TEXT:
            return False
        width, height = page.get_size()
        covered, drawn = 0.0, False
        for obj in page.get_objects(max_depth=2):
            if obj.type == pdfium_c.FPDF_PAGEOBJ_IMAGE:
                left, bottom, right, top = obj.get_bounds()
                covered += max(0.0, right - left) * max(0.0, top - bottom)
                drawn = True
            elif obj.type in (pdfium_c.FPDF_PAGEOBJ_PATH, pdfium_c.FPDF_PAGEOBJ_SHADING):
                drawn = True
        if letters < NO_TEXT:
            return drawn
        return covered >= IMAGE_COVER * width * height
