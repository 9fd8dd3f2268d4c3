"""Generate real test documents (PDF, DOCX, PNG, ZIP) on disk.

Shared by the loader, pipeline and API tests. Every helper writes to ``path``
and returns it, so calls can be inlined: ``load_file(make_pdf(tmp_path / "a.pdf", ...))``.
"""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import docx
from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFont
from pypdf import PdfReader, PdfWriter

OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"

# A DOCX block: (kind, content). Kinds: "title", "h1".."h9" (str), "p" (str),
# "li" (str, a "List Bullet" item), "table" (rows of cell strings), "image" (ignored).
Block = tuple[str, object]


def png_bytes(width: int = 4, height: int = 4, rows: int | None = None) -> bytes:
    """A valid grey PNG image, built with zlib (no imaging library needed); ``rows``: only
    that many rows of pixels, for a header that claims a huge image (a pixel bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    pixels = b"".join(b"\x00" + b"\x80" * width for _ in range(height if rows is None else rows))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(pixels))
        + chunk(b"IEND", b"")
    )


def pdf_bytes(pages: Sequence[str]) -> bytes:
    """A PDF with a text layer: one page per string (Latin-1 text only)."""
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for page_text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, page_text)
    return bytes(pdf.output())


def make_pdf(path: Path, pages: Sequence[str]) -> Path:
    """Write a PDF with a text layer, one page per string in ``pages``."""
    path.write_bytes(pdf_bytes(pages))
    return path


def make_encrypted_pdf(
    path: Path, user_password: str = "secret", pages: Sequence[str] = ("Top secret text.",)
) -> Path:
    """Write an AES-256 encrypted PDF; ``user_password=""`` makes one that opens without one."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes(pages))))
    writer.encrypt(user_password, owner_password="owner-secret", algorithm="AES-256")
    with path.open("wb") as out:
        writer.write(out)
    return path


def make_scanned_pdf(path: Path, pages: int = 2) -> Path:
    """Write a PDF whose pages have no text layer, like an un-OCRed scan."""
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    with path.open("wb") as out:
        writer.write(out)
    return path


# Scans: text drawn into images with a CJK font from Debian's fonts-wqy-zenhei.
CJK_FONT = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"
A4 = (8.27, 11.69)  # inches


def scan_image(
    text: str | None, dpi: int = 200, rotate: float = 0.0, noise: float = 0.0, points: int = 12
) -> Image.Image:
    """A grey A4 page image with ``text`` on it, as a scanner leaves it (None: blank)."""
    width, height = round(A4[0] * dpi), round(A4[1] * dpi)
    page = Image.new("L", (width, height), 255)
    if text:
        face = ImageFont.truetype(CJK_FONT, round(points * dpi / 72))
        margin = dpi
        draw = ImageDraw.Draw(page)
        lines = _wrapped(text, lambda s: face.getlength(s), width - 2 * margin)
        for n, line in enumerate(lines):
            draw.text((margin, margin + n * round(face.size * 1.6)), line, font=face, fill=0)
    if rotate:
        page = page.rotate(rotate, expand=False, fillcolor=255)
    if noise:
        rng = random.Random(len(text or ""))
        pixels = page.load()
        assert pixels is not None
        for _ in range(int(width * height * noise)):
            x, y = rng.randrange(width), rng.randrange(height)
            pixels[x, y] = 255 - int(pixels[x, y])  # type: ignore[operator]
    return page


def _wrapped(text: str, measure: Callable[[str], float], width: float) -> list[str]:
    """Lines no wider than ``width``: by words where there are spaces, else by characters."""
    units, joiner = (text.split(), " ") if " " in text else (list(text), "")
    lines, line = [], ""
    for unit in units:
        candidate = f"{line}{joiner}{unit}" if line else unit
        if measure(candidate) <= width or not line:
            line = candidate
        else:
            lines.append(line)
            line = unit
    return [*lines, line] if line else lines


def make_scan_pdf(path: Path, pages: Sequence[str | None], dpi: int = 200) -> Path:
    """An image-only PDF, one scanned page per entry (None: a blank scan)."""
    images = [scan_image(text, dpi) for text in pages]
    images[0].save(path, "PDF", save_all=True, append_images=images[1:], resolution=dpi)
    return path


def make_mixed_pdf(path: Path, pages: Sequence[tuple[str, str | None]], dpi: int = 200) -> Path:
    """A PDF of text pages ``("text", str)`` and scanned ones ``("scan", str | None)``."""
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for kind, text in pages:
        pdf.add_page()
        if kind == "text":
            pdf.multi_cell(0, 8, text or "")
        else:
            pdf.image(scan_image(text, dpi), x=0, y=0, w=210, h=297)
    path.write_bytes(bytes(pdf.output()))
    return path


def make_rotated_scan_pdf(path: Path, text: str, dpi: int = 200) -> Path:
    """A scanned page stored sideways with ``/Rotate 90``, so it shows (and renders) upright."""
    scan_image(text, dpi).rotate(90, expand=True).save(path, "PDF", resolution=dpi)
    reader = PdfReader(path)
    writer = PdfWriter()
    writer.add_page(reader.pages[0]).rotate(90)
    with path.open("wb") as out:
        writer.write(out)
    return path


def make_photo(path: Path, text: str, sideways: bool = False, dpi: int = 200) -> Path:
    """A JPEG of a page; ``sideways``: stored rotated, with the EXIF tag that stands it up."""
    image = scan_image(text, dpi, rotate=1.0).convert("RGB")
    exif = Image.Exif()
    if sideways:
        image = image.rotate(90, expand=True)
        exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    image.save(path, "JPEG", quality=90, exif=exif)
    return path


def make_tiff(path: Path, pages: Sequence[str | None], dpi: int = 200) -> Path:
    """A multi-page TIFF: one scanned page per entry."""
    images = [scan_image(text, dpi) for text in pages]
    images[0].save(path, "TIFF", save_all=True, append_images=images[1:], compression="tiff_lzw")
    return path


def make_docx(path: Path, blocks: Iterable[Block]) -> Path:
    """Write a DOCX from ``Block``s, e.g. ``[("h1", "Intro"), ("p", "Hello."), ("li", "one")]``."""
    document = docx.Document()
    for kind, content in blocks:
        if kind == "title":
            document.add_heading(str(content), level=0)
        elif kind.startswith("h"):
            document.add_heading(str(content), level=int(kind[1:]))
        elif kind == "p":
            document.add_paragraph(str(content))
        elif kind == "li":
            document.add_paragraph(str(content), style="List Bullet")
        elif kind == "table":
            _add_table(document, content)
        elif kind == "image":
            document.add_picture(io.BytesIO(png_bytes()))
        else:
            raise ValueError(f"unknown DOCX block kind {kind!r}")
    document.save(str(path))
    return path


def _add_table(document: docx.document.Document, rows: object) -> None:
    """Append a table whose cells hold the given strings."""
    assert isinstance(rows, list)
    table = document.add_table(rows=len(rows), cols=len(rows[0]))
    for row, values in zip(table.rows, rows, strict=True):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value


def make_zip_bomb(path: Path, expanded_bytes: int, name: str = "word/document.xml") -> Path:
    """Write a small ZIP whose ``name`` member inflates to ``expanded_bytes`` zeros."""
    block = b"\x00" * 2**20
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        # force_zip64: the member may exceed 2 GiB; chunks keep memory flat.
        with archive.open(name, "w", force_zip64=True) as member:
            left = expanded_bytes
            while left > 0:
                member.write(block[: min(left, len(block))])
                left -= len(block)
    return path


def make_encrypted_docx(path: Path) -> Path:
    """Write what Word saves for a password-protected DOCX: an OLE2 compound file."""
    path.write_bytes(OLE2_MAGIC + b"\x00" * 504 + b"\xff" * 3584)
    return path


def _with_document_xml(path: Path, body: Iterable[bytes]) -> Path:
    """Rewrite a real DOCX at ``path`` so that its body is the streamed XML ``body``."""
    make_docx(path, [("p", "placeholder")])
    with zipfile.ZipFile(path) as source:
        parts = {info.filename: source.read(info) for info in source.infolist()}
    head = parts["word/document.xml"].split(b"<w:body>")[0]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            if name != "word/document.xml":
                archive.writestr(name, data)
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            member.write(head + b"<w:body>")
            for piece in body:
                member.write(piece)
            member.write(b"</w:body></w:document>")
    return path


def make_docx_element_bomb(path: Path, paragraphs: int) -> Path:
    """A DOCX of ``paragraphs`` empty paragraphs: tens of KB that python-docx turns into GB."""
    block = b"<w:p/>" * 100_000
    return _with_document_xml(path, (block for _ in range(paragraphs // 100_000)))


def make_deep_docx(path: Path, depth: int) -> Path:
    """A DOCX whose table nests ``depth`` tables deep."""
    opening = b"<w:tbl><w:tr><w:tc>" * depth
    closing = b"<w:p/></w:tc></w:tr></w:tbl>" * depth
    return _with_document_xml(path, [opening, b"<w:p><w:r><w:t>deep</w:t></w:r></w:p>", closing])


def make_slow_pdf(path: Path, pages: int, operations: int = 1_000_000) -> Path:
    """A small PDF whose pages all draw one shared content stream of ``operations`` empty
    text shows: each page costs pypdf seconds of CPU, the file stays under a megabyte."""
    stream = zlib.compress(b"BT /F1 12 Tf " + b"() Tj " * operations + b"ET", 9)
    kids = " ".join(f"{4 + i} 0 R" for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Count {pages} /Kids [{kids}] >>".encode(),
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream
        + b"\nendstream",
        *(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R"
          b" /Resources << /Font << /F1 << /Type /Font /Subtype /Type1"
          b" /BaseFont /Helvetica >> >> >> >>" for _ in range(pages)),
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    path.write_bytes(bytes(out))
    return path
