"""Type detection from file name and content, and the checks ``load`` makes first."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import pytest

from ingest.loaders import (
    LOADERS,
    PAGED_LOADERS,
    SUPPORTED_EXTENSIONS,
    Limits,
    detect_type,
    load,
)
from retrieval.errors import ExtractionFailed, LimitExceeded, UnsupportedFileType
from tests.filegen import OLE2_MAGIC, make_pdf, pdf_bytes, png_bytes
from tests.ingest.fixtures import load_file


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "hello")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "head", "expected"),
    [
        ("report.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "pdf"),
        ("REPORT.PDF", b"%PDF-1.4\n", "pdf"),
        ("leading-junk.pdf", b"\x00junk" * 100 + b"%PDF-1.4\n", "pdf"),
        ("letter.docx", _zip_bytes(), "docx"),
        ("notes.txt", b"plain notes\n", "txt"),
        ("notes.text", "caf\xe9 cr\xe8me".encode("latin-1"), "txt"),
        ("README.md", b"# Title\n\nbody\n", "txt"),
        ("README.markdown", b"# Title\n", "txt"),
        ("utf16.txt", "hello, world\n".encode("utf-16"), "txt"),
        ("utf16-no-bom.txt", "hello, world\n".encode("utf-16-le"), "txt"),
        ("zh-utf16.txt", ("知识库检索增强生成。" * 20).encode("utf-16-le"), "txt"),
        ("utf32.txt", "hello\n".encode("utf-32"), "txt"),
        ("chinese.txt", "中文文本".encode("gb18030"), "txt"),
        ("uploads/sub/report.pdf", b"%PDF-1.7\n", "pdf"),
    ],
)
def test_detects_supported_types(name: str, head: bytes, expected: str) -> None:
    assert detect_type(name, head) == expected


def test_every_supported_type_has_a_loader() -> None:
    assert set(SUPPORTED_EXTENSIONS.values()) == set(LOADERS) | set(PAGED_LOADERS)


def test_encrypted_docx_passes_detection_so_its_loader_can_explain() -> None:
    assert detect_type("secret.docx", OLE2_MAGIC + b"\x00" * 500) == "docx"


@pytest.mark.parametrize("name", ["setup.exe", "photo.GIF", "book.epub", "legacy.doc"])
def test_unsupported_extension(name: str) -> None:
    extension = name[name.rindex(".") :].lower()
    with pytest.raises(UnsupportedFileType) as caught:
        detect_type(name, b"whatever")
    assert str(caught.value) == (
        f"unsupported type: {extension} files are not supported "
        "(supported: PDF, DOCX, TXT, Markdown, PNG, JPEG, TIFF)"
    )


def test_missing_extension_is_named() -> None:
    with pytest.raises(UnsupportedFileType, match="Makefile has no extension"):
        detect_type("Makefile", b"all:\n\techo hi\n")


@pytest.mark.parametrize(
    ("name", "head", "content"),
    [
        ("report.pdf", png_bytes(), "a PNG image"),
        ("notes.txt", pdf_bytes(["hello"]), "a PDF document"),
        ("photo.docx", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "a JPEG image"),
        ("anim.pdf", b"GIF89a\x01\x00\x01\x00", "a GIF image"),
        ("notes.md", gzip.compress(b"hello"), "a GZIP archive"),
        ("photo.png", pdf_bytes(["hello"]), "a PDF document"),
        ("scan.tiff", b"just some text\n", "plain text"),
        ("tool.txt", b"\x7fELF\x02\x01\x01" + b"\x00" * 60, "an ELF executable"),
        ("tool.txt", b"MZ\x90\x00\x03\x00\x00\x00This program cannot be run", "a Windows"),
        ("sheet.txt", OLE2_MAGIC + b"\x00" * 100, "an OLE2 file"),
        ("letter.txt", b"{\\rtf1\\ansi\\deff0 Hello}", "an RTF document"),
        ("page.txt", b"\n<!DOCTYPE html>\n<html><body>hi</body></html>", "an HTML page"),
        ("page.md", b"<html><body>hi</body></html>", "an HTML page"),
        ("archive.txt", _zip_bytes(), "a ZIP archive"),
        ("report.pdf", b"just some text, no PDF here\n", "plain text"),
        ("letter.docx", b"just some text\n", "plain text"),
        ("data.txt", bytes(range(256)) * 4, "binary data"),
    ],
)
def test_content_mismatch_names_both(name: str, head: bytes, content: str) -> None:
    extension = name[name.rindex(".") :]
    with pytest.raises(UnsupportedFileType) as caught:
        detect_type(name, head)
    assert str(caught.value).startswith(
        f"unsupported type: {name} is named {extension} but its content is {content}"
    )


def test_mismatch_message_uses_the_base_name() -> None:
    with pytest.raises(UnsupportedFileType, match=r"^unsupported type: scan\.pdf is named"):
        detect_type("C:\\Users\\me\\scan.pdf", png_bytes())


def test_png_renamed_pdf_is_rejected_by_load(tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(png_bytes())
    with pytest.raises(UnsupportedFileType, match="named .pdf but its content is a PNG image"):
        load_file(path)


def test_pdf_renamed_txt_is_rejected_by_load(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "notes.txt", ["hello"])
    with pytest.raises(UnsupportedFileType, match="named .txt but its content is a PDF"):
        load_file(path)


def test_exe_is_rejected_when_load_is_called(tmp_path: Path) -> None:
    path = tmp_path / "setup.exe"
    path.write_bytes(b"MZ\x90\x00" + b"\x00" * 200)
    with path.open("rb") as stream, pytest.raises(UnsupportedFileType, match=r"\.exe files"):
        load(stream, path.name)  # raises before any iteration


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.pdf"
    path.write_bytes(b"")
    with path.open("rb") as stream, pytest.raises(ExtractionFailed, match="^empty file"):
        load(stream, path.name)


def test_empty_file_with_unsupported_extension_reports_the_type(tmp_path: Path) -> None:
    path = tmp_path / "empty.exe"
    path.write_bytes(b"")
    with pytest.raises(UnsupportedFileType):
        load_file(path)


def test_file_over_size_limit_is_rejected_before_reading(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "big.pdf", ["hello " * 200])
    size = path.stat().st_size
    with path.open("rb") as stream, pytest.raises(LimitExceeded, match="over the limit") as caught:
        load(stream, path.name, Limits(max_file_bytes=size - 1))
    assert "MB" in str(caught.value)
    assert load_file(path, limits=Limits(max_file_bytes=size))
