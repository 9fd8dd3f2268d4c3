"""DOCX loading: sections, tables, lists, images, zip bombs, encryption and damage."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from ingest.loaders import Limits
from ingest.loaders.text import SEGMENT_CHARS
from retrieval.errors import ExtractionFailed, LimitExceeded, UnsupportedFileType
from tests.filegen import make_docx, make_encrypted_docx, make_zip_bomb
from tests.ingest.fixtures import assert_offsets, load_file

BLOCKS = [
    ("p", "Preface before any heading."),
    ("title", "Annual Report"),
    ("p", "Summary of the year."),
    ("h1", "Sales"),
    ("p", "Sales grew."),
    ("table", [["Region", "Revenue"], ["North", "12"], ["South", "7"]]),
    ("p", "After the table."),
    ("image", None),
    ("h2", "Plans"),
    ("li", "hire people"),
    ("li", "open an office"),
]


def test_sections_tables_lists_in_document_order(tmp_path: Path) -> None:
    segments = load_file(make_docx(tmp_path / "report.docx", BLOCKS))
    assert [(segment.section, segment.text) for segment in segments] == [
        (None, "Preface before any heading."),
        ("Annual Report", "Annual Report\n\nSummary of the year."),
        (
            "Sales",
            "Sales\n\nSales grew.\n\nRegion | Revenue\nNorth | 12\nSouth | 7\n\nAfter the table.",
        ),
        ("Plans", "Plans\n\n- hire people\n\n- open an office"),
    ]
    assert all(segment.page is None for segment in segments)


def test_offsets_count_block_separators(tmp_path: Path) -> None:
    segments = load_file(make_docx(tmp_path / "report.docx", BLOCKS))
    assert_offsets(segments, "\n\n")


def test_long_section_is_split_with_the_same_section(tmp_path: Path) -> None:
    paragraphs = [("p", f"Paragraph {index}. " + "word " * 200) for index in range(200)]
    segments = load_file(make_docx(tmp_path / "long.docx", [("h1", "Body"), *paragraphs]))
    assert len(segments) > 2
    assert {segment.section for segment in segments} == {"Body"}
    assert max(len(segment.text) for segment in segments) <= SEGMENT_CHARS
    assert_offsets(segments, "\n\n")
    assert "Paragraph 199." in segments[-1].text


def test_image_only_document_has_no_text(tmp_path: Path) -> None:
    with pytest.raises(ExtractionFailed, match="^no extractable text"):
        load_file(make_docx(tmp_path / "picture.docx", [("image", None)]))


def test_zip_bomb_is_refused_from_the_directory(tmp_path: Path) -> None:
    path = make_zip_bomb(tmp_path / "bomb.docx", 600 * 2**20)
    assert path.stat().st_size < 5 * 2**20
    with pytest.raises(LimitExceeded) as caught:
        load_file(path)
    assert str(caught.value) == "DOCX expands to 600 MB, over the limit of 512 MB (zip bomb?)"


def test_expansion_limit_is_configurable(tmp_path: Path) -> None:
    path = make_docx(tmp_path / "report.docx", BLOCKS)
    with pytest.raises(LimitExceeded, match="zip bomb"):
        load_file(path, limits=Limits(max_docx_uncompressed_bytes=1000))


def test_lying_zip_directory_fails_instead_of_inflating(tmp_path: Path) -> None:
    path = make_docx(tmp_path / "report.docx", BLOCKS)
    data = bytearray(path.read_bytes())
    # Shrink the stated size of word/document.xml in its central directory entry.
    entry = data.index(b"PK\x01\x02")
    while data[entry + 46 : entry + 46 + 17] != b"word/document.xml":
        entry = data.index(b"PK\x01\x02", entry + 4)
    data[entry + 24 : entry + 28] = (10).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(ExtractionFailed, match="damaged"):
        load_file(path)


def test_encrypted_docx(tmp_path: Path) -> None:
    with pytest.raises(ExtractionFailed, match="^encrypted or password-protected DOCX"):
        load_file(make_encrypted_docx(tmp_path / "secret.docx"))


def test_zip_that_is_not_a_word_document(tmp_path: Path) -> None:
    path = tmp_path / "archive.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(UnsupportedFileType) as caught:
        load_file(path)
    assert str(caught.value) == (
        "unsupported type: .docx file is a ZIP archive but not a Word document"
    )


def test_corrupt_zip_is_damaged(tmp_path: Path) -> None:
    path = tmp_path / "broken.docx"
    path.write_bytes(b"PK\x03\x04" + b"\x13\x37" * 500)
    with pytest.raises(ExtractionFailed, match="^damaged DOCX"):
        load_file(path)


def test_invalid_document_xml_is_damaged(tmp_path: Path) -> None:
    path = make_docx(tmp_path / "report.docx", BLOCKS)
    broken = tmp_path / "broken.docx"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(broken, "w") as target:
        for member in source.infolist():
            is_main = member.filename == "word/document.xml"
            target.writestr(member, b"<w:document" if is_main else source.read(member))
    with pytest.raises(ExtractionFailed, match="^damaged or unreadable DOCX"):
        load_file(broken)


def test_character_limit(tmp_path: Path) -> None:
    path = make_docx(tmp_path / "report.docx", BLOCKS)
    with pytest.raises(LimitExceeded, match="characters"):
        load_file(path, limits=Limits(max_chars=50))
