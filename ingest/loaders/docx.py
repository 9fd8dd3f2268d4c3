"""DOCX: body text in document order with python-docx, grouped by heading."""

from __future__ import annotations

import re
import xml.parsers.expat
import zipfile
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

import docx
from docx.oxml.ns import qn

from ingest.loaders.text import SEGMENT_CHARS, split_text
from retrieval.errors import ExtractionFailed, LimitExceeded, UnsupportedFileType
from retrieval.types import Segment

if TYPE_CHECKING:
    from ingest.loaders import Limits

OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
BLOCK_SEPARATOR = "\n\n"
CELL_SEPARATOR = " | "

# Content controls (w:sdt) wrap paragraphs and tables that Word shows as ordinary body text.
_BODY_BLOCKS = "./w:p | ./w:tbl | ./w:sdt/w:sdtContent/w:p | ./w:sdt/w:sdtContent/w:tbl"
_TABLE = qn("w:tbl")
_HEADING_STYLE = re.compile(r"^(Title|Heading \d)$")
_MAIN_PART = re.compile(r"^word/document\d*\.xml$")
_PARSED_PART = re.compile(r"^word/[^/]+\.xml$")  # the parts python-docx builds trees of
_SCAN_BYTES = 1 << 16
_MB = 2**20


def check_package(stream: BinaryIO, limits: Limits) -> None:
    """Reject encrypted files, non-Word ZIPs and ZIP bombs before python-docx parses them."""
    magic = stream.read(len(OLE2_MAGIC))
    stream.seek(0)
    if magic == OLE2_MAGIC:
        raise ExtractionFailed(
            "encrypted or password-protected DOCX (or an old .doc file renamed .docx): "
            "remove the password or save it as .docx in Word, then upload it again"
        )
    try:
        with zipfile.ZipFile(stream) as archive:
            members = archive.infolist()
            _check_expanded(members, limits)
            _check_elements(archive, members, limits)
    except zipfile.BadZipFile as exc:
        raise ExtractionFailed(
            f"damaged DOCX: it is not a readable ZIP archive ({exc}); "
            "open it in Word and save it again"
        ) from exc
    finally:
        stream.seek(0)


def _check_expanded(members: list[zipfile.ZipInfo], limits: Limits) -> None:
    if not any(_MAIN_PART.match(member.filename) for member in members):
        raise UnsupportedFileType(
            "unsupported type: .docx file is a ZIP archive but not a Word document"
        )
    # zipfile stops each member at the size the directory states (a lying entry fails its
    # CRC check), so this sum bounds what python-docx can inflate.
    expanded = sum(member.file_size for member in members)
    if expanded > limits.max_docx_uncompressed_bytes:
        raise LimitExceeded(
            f"DOCX expands to {expanded // _MB} MB, over the limit of "
            f"{limits.max_docx_uncompressed_bytes // _MB} MB (zip bomb?)"
        )


def _check_elements(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo],
                    limits: Limits) -> None:
    """Count the XML elements python-docx would build (a tree costs ~0.5 KB an element).

    A few kilobytes of compressed ``<w:p/>`` are millions of elements; counting
    them with a streaming parser costs a fraction of building them.
    """
    count = depth = 0

    def start(_name: str, _attrs: object) -> None:
        nonlocal count, depth
        count += 1
        depth += 1
        if count > limits.max_docx_elements:
            raise LimitExceeded(
                f"DOCX has more than {limits.max_docx_elements:,} XML elements, over the "
                "limit (an element bomb?); split the document, or raise KB_MAX_DOCX_ELEMENTS"
            )
        if depth > limits.max_docx_depth:
            raise LimitExceeded(
                f"DOCX nests XML elements more than {limits.max_docx_depth} deep, over the "
                "limit; save it again from Word, or simplify its nested tables"
            )

    def end(_name: str) -> None:
        nonlocal depth
        depth -= 1

    for member in members:
        if not _PARSED_PART.match(member.filename):
            continue
        parser = xml.parsers.expat.ParserCreate()
        parser.StartElementHandler, parser.EndElementHandler = start, end
        try:
            with archive.open(member) as part:
                while data := part.read(_SCAN_BYTES):
                    parser.Parse(data, False)
                parser.Parse(b"", True)
        except xml.parsers.expat.ExpatError as exc:
            raise ExtractionFailed(
                f"damaged or unreadable DOCX: {member.filename} is not well-formed XML ({exc}); "
                "open it in Word and save it again"
            ) from exc


def _table_text(table: Any) -> str:
    """One line per row, cells joined with " | " (nested tables flattened into their cell)."""
    rows = []
    for row in table.xpath("./w:tr"):
        cells = [
            " ".join(p.text.strip() for p in cell.xpath(".//w:p") if p.text.strip())
            for cell in row.xpath("./w:tc")
        ]
        if any(cells):
            rows.append(CELL_SEPARATOR.join(cells))
    return "\n".join(rows)


def _style_names(document: Any) -> dict[str, str]:
    """Map style ids to English style names once (ids are localised, names are not)."""
    return {style.style_id: style.name for style in document.styles if style.style_id}


def body_blocks(document: Any) -> Iterator[tuple[str, bool]]:
    """Yield ``(text, is_heading)`` for each paragraph and table in document order."""
    names = _style_names(document)
    for element in document.element.body.xpath(_BODY_BLOCKS):
        if element.tag == _TABLE:
            yield _table_text(element), False
            continue
        text = element.text.strip()
        style = names.get(element.style or "", "")
        if _HEADING_STYLE.match(style):
            yield text, True
        elif style.startswith("List") or element.xpath("./w:pPr/w:numPr"):
            yield f"- {text}" if text else "", False
        else:
            yield text, False


def group_sections(blocks: Iterable[tuple[str, bool]], limits: Limits) -> Iterator[Segment]:
    """Join the blocks under each heading into segments of at most ~64 KiB."""
    section: str | None = None
    parts: list[str] = []
    size = offset = 0
    for text, is_heading in blocks:
        for index, piece in enumerate(split_text(text)):
            starts_section = is_heading and index == 0
            if parts and (starts_section or size + len(piece) > SEGMENT_CHARS):
                yield Segment(BLOCK_SEPARATOR.join(parts), offset, section=section)
                offset += size
                parts, size = [], 0
            if starts_section:
                section = piece.strip()
            parts.append(piece)
            # Counting a separator after every block makes the next segment's offset right.
            size += len(piece) + len(BLOCK_SEPARATOR)
            if offset + size > limits.max_chars:
                raise LimitExceeded(
                    f"DOCX has more than {limits.max_chars:,} characters of text, over the "
                    "limit; split it into smaller files"
                )
    if parts:
        yield Segment(BLOCK_SEPARATOR.join(parts), offset, section=section)


def load_docx(stream: BinaryIO, limits: Limits) -> Iterator[Segment]:
    """Stream a Word document's text as one segment per section (split when large)."""
    check_package(stream, limits)
    document = docx.Document(stream)
    yield from group_sections(body_blocks(document), limits)
