"""PDF loading: pages, offsets, encryption, scans, damage and limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.loaders import Limits, load
from ingest.loaders.pdf import normalise_page
from retrieval.errors import ExtractionFailed, LimitExceeded
from tests.filegen import make_encrypted_pdf, make_pdf, make_scanned_pdf, pdf_bytes
from tests.ingest.fixtures import assert_offsets, load_file

PAGES = ["Alpha page talks about apples.", "Beta page mentions a zanzibar quokka.", "Gamma."]


def test_segments_carry_page_numbers(tmp_path: Path) -> None:
    segments = load_file(make_pdf(tmp_path / "three.pdf", PAGES))
    assert [segment.page for segment in segments] == [1, 2, 3]
    (quokka,) = [segment for segment in segments if "quokka" in segment.text]
    assert quokka.page == 2
    assert quokka.text == PAGES[1]


def test_offsets_run_across_pages(tmp_path: Path) -> None:
    segments = load_file(make_pdf(tmp_path / "three.pdf", PAGES))
    assert_offsets(segments, "\n\n")


def test_segments_stream_lazily(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "three.pdf", PAGES)
    with path.open("rb") as stream:
        segments = load(stream, path.name)
        first = next(segments)
    assert first.page == 1


def test_blank_pages_are_skipped_but_numbering_kept(tmp_path: Path) -> None:
    segments = load_file(make_pdf(tmp_path / "gap.pdf", ["first", " ", "third"]))
    assert [(segment.text, segment.page) for segment in segments] == [("first", 1), ("third", 3)]


def test_normalise_page() -> None:
    raw = "\ufeffa \t  b \r\n\r\n\r\n\r\n\x00c  \n  d\re  \n"
    assert normalise_page(raw) == "a b\n\nc\nd\ne"


def test_encrypted_pdf_needs_password(tmp_path: Path) -> None:
    with pytest.raises(ExtractionFailed, match="encrypted") as caught:
        load_file(make_encrypted_pdf(tmp_path / "locked.pdf"))
    assert "password" in str(caught.value)


def test_encrypted_pdf_with_empty_user_password_opens(tmp_path: Path) -> None:
    path = make_encrypted_pdf(tmp_path / "owner-only.pdf", user_password="", pages=["Open text"])
    assert [segment.text for segment in load_file(path)] == ["Open text"]


def test_scanned_pdf_without_text_layer(tmp_path: Path) -> None:
    with pytest.raises(ExtractionFailed) as caught:
        load_file(make_scanned_pdf(tmp_path / "scan.pdf", pages=2))
    assert str(caught.value) == (
        "no extractable text: the PDF has 2 blank pages (no text layer and nothing drawn); "
        "check that it is the right file"
    )


def test_garbage_after_pdf_header_is_damaged(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pdf"
    path.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 20)
    with pytest.raises(ExtractionFailed, match="damaged"):
        load_file(path)


def test_truncated_pdf_is_damaged(tmp_path: Path) -> None:
    data = pdf_bytes(PAGES)
    path = tmp_path / "truncated.pdf"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ExtractionFailed, match="damaged"):
        load_file(path)


def test_page_limit(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "three.pdf", PAGES)
    with pytest.raises(LimitExceeded, match="PDF has 3 pages, over the limit of 2"):
        load_file(path, limits=Limits(max_pages=2))
    assert len(load_file(path, limits=Limits(max_pages=3))) == 3


def test_character_limit(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "three.pdf", PAGES)
    with pytest.raises(LimitExceeded, match="characters"):
        load_file(path, limits=Limits(max_chars=len(PAGES[0]) + 5))
