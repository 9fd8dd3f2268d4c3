"""OCR: scanned PDFs, mixed PDFs, photos and TIFFs read by the real engines, and budgets.

Pages are rendered by the tests (``tests.filegen``) with a CJK font from Debian's
packages, then read by RapidOCR and Tesseract, so every check here can fail.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ingest import ocr
from ingest.catalog import Catalog
from ingest.loaders import Limits, load
from ingest.ocr import OcrSettings, OcrUnavailable, Reader, is_latin, tidy
from ingest.workers import ParseBudget, ParserPool
from retrieval.errors import ExtractionFailed, LimitExceeded
from retrieval.types import Segment
from tests.filegen import (
    make_mixed_pdf,
    make_photo,
    make_rotated_scan_pdf,
    make_scan_pdf,
    make_tiff,
    png_bytes,
    scan_image,
)

ENGLISH = (
    "The harbour authority approved the new lighthouse budget on Tuesday. Maintenance of "
    "the foghorn will be funded by a levy on visiting yachts, and the keeper's cottage "
    "becomes a small museum about shipwrecks along the northern coast."
)
CHINESE = (
    "公司年会将于十二月在杭州西湖举行。所有员工需要在本月二十日之前提交报名表，"
    "交通和住宿费用由行政部门统一报销。会议期间将评选年度优秀员工并发放奖金。"
)


def read(path: Path, settings: OcrSettings | None = None) -> tuple[list[Segment], Reader]:
    reader = Reader(settings or OcrSettings())
    with path.open("rb") as stream:
        return list(load(stream, path.name, Limits(), reader)), reader


def words_found(text: str, truth: str) -> float:
    """Share of the truth's words (English) found in ``text``."""
    words = [w.strip(".,'").lower() for w in truth.split()]
    found = text.lower()
    return sum(w in found for w in words) / len(words)


def chars_found(text: str, truth: str) -> float:
    """Share of the truth's characters (Chinese) found, in order, in ``text``."""
    import difflib

    matcher = difflib.SequenceMatcher(None, text, truth, autojunk=False)
    return sum(block.size for block in matcher.get_matching_blocks()) / len(truth)


def test_tidy_joins_what_the_page_layout_split() -> None:
    assert tidy("公 司 年 会\n将 于 杭州") == "公司年会将于杭州"
    assert tidy("light-\nhouse keeper\nof the coast") == "lighthouse keeper\nof the coast"
    assert is_latin("The harbour authority approved") and not is_latin("公司年会将于十二月 OK")


def test_english_scan_is_read_by_tesseract_with_exact_pages(tmp_path: Path) -> None:
    segments, reader = read(make_scan_pdf(tmp_path / "scan.pdf", [ENGLISH, None, ENGLISH]))
    assert {s.page for s in segments} == {1, 3} and all(s.ocr for s in segments)
    assert words_found(" ".join(s.text for s in segments if s.page == 3), ENGLISH) >= 0.95
    assert (reader.counts.pages, reader.counts.ocr, reader.counts.blank) == (3, 3, 1)
    assert reader.engine is not None and reader.engine.name == "tesseract"


def test_chinese_photo_is_read_by_rapidocr(tmp_path: Path) -> None:
    segments, reader = read(make_photo(tmp_path / "notice.jpg", CHINESE))
    text = "".join(s.text for s in segments)
    assert chars_found(text, CHINESE) >= 0.9 and " " not in text
    assert [s.page for s in segments] == [1] and segments[0].ocr
    assert reader.engine is not None and reader.engine.name == "rapidocr"


def test_mixed_pdf_keeps_text_pages_and_reads_the_scanned_one(tmp_path: Path) -> None:
    path = make_mixed_pdf(tmp_path / "mixed.pdf", [
        ("text", "Minutes of the board meeting, page one."),
        ("scan", CHINESE),
        ("text", "Appendix with the signed attendance list."),
    ])
    segments, reader = read(path)
    by_page = {s.page: s for s in segments}
    assert sorted(by_page) == [1, 2, 3]
    assert not by_page[1].ocr and by_page[1].text == "Minutes of the board meeting, page one."
    assert by_page[2].ocr and chars_found(by_page[2].text, CHINESE) >= 0.9
    assert not by_page[3].ocr
    assert (reader.counts.ocr, reader.counts.blank) == (1, 0)


def test_a_mixed_language_document_reads_each_page_with_its_engine(tmp_path: Path) -> None:
    segments, _ = read(make_scan_pdf(tmp_path / "both.pdf", [ENGLISH, CHINESE, ENGLISH]))
    pages = {s.page: s.text for s in segments}
    assert words_found(pages[1], ENGLISH) >= 0.95 and words_found(pages[3], ENGLISH) >= 0.95
    assert chars_found(pages[2], CHINESE) >= 0.9


def test_blank_scan_fails_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(ExtractionFailed, match="OCR found no text on 2 scanned pages"):
        read(make_scan_pdf(tmp_path / "blank.pdf", [None, None]))


def test_rotated_page_and_sideways_photo_are_read_upright(tmp_path: Path) -> None:
    segments, _ = read(make_rotated_scan_pdf(tmp_path / "turned.pdf", ENGLISH))
    assert words_found(" ".join(s.text for s in segments), ENGLISH) >= 0.95
    segments, _ = read(make_photo(tmp_path / "sideways.jpg", ENGLISH, sideways=True))
    assert words_found(" ".join(s.text for s in segments), ENGLISH) >= 0.9


def test_tiff_frames_are_pages(tmp_path: Path) -> None:
    segments, reader = read(make_tiff(tmp_path / "fax.tiff", [CHINESE, ENGLISH]))
    assert {s.page for s in segments} == {1, 2} and reader.counts.pages == 2
    assert words_found(" ".join(s.text for s in segments if s.page == 2), ENGLISH) >= 0.95


def test_ocr_off_indexes_text_pages_and_names_the_setting(tmp_path: Path) -> None:
    off = OcrSettings(engine="off")
    mixed = make_mixed_pdf(tmp_path / "mixed.pdf", [("text", "Plain text page."),
                                                     ("scan", ENGLISH)])
    segments, _ = read(mixed, off)
    assert [s.page for s in segments] == [1]
    with pytest.raises(ExtractionFailed, match="OCR is off: set KB_OCR=auto"):
        read(make_scan_pdf(tmp_path / "scan.pdf", [ENGLISH]), off)
    with pytest.raises(ExtractionFailed, match=r"needs OCR, which is off \(KB_OCR=off\)"):
        read(make_photo(tmp_path / "photo.jpg", ENGLISH), off)


def test_page_budget_fails_a_large_scan_before_reading_it(tmp_path: Path) -> None:
    path = make_scan_pdf(tmp_path / "big.pdf", [ENGLISH] * 3)
    reader = Reader(OcrSettings(max_pages=2))
    with pytest.raises(LimitExceeded, match="has 3 pages to OCR .* limit of 2 \\(KB_OCR_MAX_PAGES"):
        with path.open("rb") as stream:
            list(load(stream, path.name, Limits(), reader))
    assert reader.counts.ocr == 0  # refused up front, not after reading two pages


def test_time_budget_stops_a_slow_page_in_the_worker_and_the_pool_goes_on(
    tmp_path: Path,
) -> None:
    slow = tmp_path / "slow.pdf"
    scan_image(ENGLISH * 12, dpi=300, noise=0.01, points=8).save(slow, "PDF", resolution=300)
    fine = make_scan_pdf(tmp_path / "fine.pdf", [ENGLISH])
    pool = ParserPool(1, ParseBudget(cpu_seconds=60, memory_mb=2048),
                      OcrSettings(engine="rapidocr", page_seconds=1))
    try:
        with pytest.raises(LimitExceeded, match=r"OCR of page 1 took more than 1 s .*"
                                                r"KB_OCR_PAGE_SECONDS"):
            list(pool.parse(slow, slow.name, Limits()))
        pool.ocr = OcrSettings(page_seconds=60)
        parsed = pool.parse(fine, fine.name, Limits())
        text = ""
        try:
            while True:
                text += next(parsed).text
        except StopIteration as done:
            counts = done.value
        assert words_found(text, ENGLISH) >= 0.95 and counts.ocr == 1
    finally:
        pool.close()


def test_missing_engines_name_their_package(monkeypatch: pytest.MonkeyPatch) -> None:
    page = scan_image(ENGLISH)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(OcrUnavailable, match="tesseract is not installed.*tesseract-ocr"):
        Reader(OcrSettings(engine="tesseract")).read(page, 1)
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)
    ocr._rapidocr.cache_clear()
    try:
        with pytest.raises(OcrUnavailable, match="pip install rapidocr-onnxruntime==1.4.4"):
            Reader(OcrSettings(engine="rapidocr")).read(page, 1)
        found, missing = ocr.available(OcrSettings())
        assert found == [] and len(missing) == 2
    finally:
        ocr._rapidocr.cache_clear()


def test_damaged_and_oversized_images_fail_alone(tmp_path: Path) -> None:
    truncated = tmp_path / "cut.png"
    scan_image(ENGLISH).save(truncated, "PNG")
    truncated.write_bytes(truncated.read_bytes()[:2000])
    with pytest.raises(ExtractionFailed, match="damaged image"):
        read(truncated)
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_bytes(20000, 20000, rows=1))
    with pytest.raises(LimitExceeded, match="20000 × 20000 pixels, over the limit"):
        read(huge)


def test_catalog_gains_page_columns(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "catalog.db"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE documents (id TEXT PRIMARY KEY, key TEXT NOT NULL UNIQUE, source "
                "TEXT NOT NULL, content_hash TEXT NOT NULL, type TEXT NOT NULL, size INTEGER NOT "
                "NULL, status TEXT NOT NULL, error TEXT, chunks INTEGER NOT NULL DEFAULT 0, "
                "generation INTEGER NOT NULL DEFAULT 0, fingerprint TEXT NOT NULL DEFAULT '', "
                "owner TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL)")
    old.execute("INSERT INTO documents VALUES ('d', 'k', 'a.pdf', 'h', 'pdf', 1, 'indexed', "
                "NULL, 3, 1, 'f', NULL, 0, 0)")
    old.commit()
    old.close()
    catalog = Catalog(path)
    try:
        doc = catalog.get("d")
        assert doc is not None and doc.pages is None and doc.ocr_pages == 0
        assert catalog.counts()["pages_ocr"] == 0
    finally:
        catalog.close()
