"""Text and Markdown loading: encodings, newlines, streaming segments, sections, limits."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from ingest.loaders import Limits, load
from ingest.loaders.text import BLOCK_BYTES, SEGMENT_CHARS, split_text
from retrieval.errors import ExtractionFailed, LimitExceeded
from tests.ingest.fixtures import assert_offsets, load_file

FRENCH = "café crème brûlée à la française, naïve façade.\n" * 8
CHINESE = "知识库检索增强生成。这是一个简体中文的句子，用于测试编码检测。\n" * 8
JAPANESE = "これは日本語のテキストです。知識ベースの検索をテストします。\n" * 8


def _text_of(path: Path) -> str:
    segments = load_file(path)
    assert_offsets(segments, "")
    return "".join(segment.text for segment in segments)


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        (FRENCH, "utf-8"),
        (FRENCH, "utf-8-sig"),
        (FRENCH, "utf-16"),
        (FRENCH, "utf-16-le"),
        (FRENCH, "utf-32"),
        (FRENCH, "latin-1"),
        (FRENCH + "Prix : 5 € “net” – voilà.\n", "cp1252"),
        ("Größe, Übermaß und schöne Äpfel.\n" * 8, "cp1252"),
        (CHINESE, "gb18030"),
        (CHINESE, "utf-8"),
        (CHINESE, "utf-16-le"),  # no BOM and no NUL bytes: found by decoding
        (CHINESE, "utf-16-be"),
        (JAPANESE, "shift_jis"),
        ("Съешь же ещё этих мягких французских булок.\n" * 8, "cp1251"),
    ],
)
def test_encodings_are_detected(tmp_path: Path, text: str, encoding: str) -> None:
    path = tmp_path / "doc.txt"
    path.write_bytes(text.encode(encoding))
    assert _text_of(path) == text


def test_short_latin1_file_is_not_taken_for_utf8(tmp_path: Path) -> None:
    path = tmp_path / "short.txt"
    path.write_bytes("café".encode("latin-1"))  # ends in what could start a UTF-8 sequence
    assert _text_of(path) == "café"


def test_newlines_nuls_and_boms_are_normalised(tmp_path: Path) -> None:
    path = tmp_path / "crlf.txt"
    path.write_bytes(b"\xef\xbb\xbfone\r\ntwo\rthree\x00\r\n\r\nfour\n")
    assert _text_of(path) == "one\ntwo\nthree\n\nfour\n"


def test_crlf_split_across_blocks_stays_one_newline(tmp_path: Path) -> None:
    path = tmp_path / "boundary.txt"
    path.write_bytes(b"a" * (BLOCK_BYTES - 1) + b"\r\nb\r")
    assert _text_of(path) == "a" * (BLOCK_BYTES - 1) + "\nb\n"


def test_multi_block_file_is_cut_at_paragraph_breaks(tmp_path: Path) -> None:
    paragraphs = [
        f"Paragraph {index}: " + "lorem ipsum dolor " * (index % 40) for index in range(9000)
    ]
    original = "\r\n\r\n".join(paragraphs)
    path = tmp_path / "long.txt"
    path.write_bytes(original.encode())
    assert path.stat().st_size > 2.5 * BLOCK_BYTES
    segments = load_file(path)
    assert_offsets(segments, "")
    assert "".join(segment.text for segment in segments) == original.replace("\r\n", "\n")
    assert all(len(segment.text) <= SEGMENT_CHARS for segment in segments)
    assert all(segment.text.endswith("\n\n") for segment in segments[:-1])
    assert all(len(segment.text) > SEGMENT_CHARS // 2 for segment in segments[:-1])


def test_text_without_breaks_is_cut_hard() -> None:
    text = "x" * (2 * SEGMENT_CHARS + 10)
    pieces = list(split_text(text))
    assert [len(piece) for piece in pieces] == [SEGMENT_CHARS, SEGMENT_CHARS, 10]


def test_markdown_sections_follow_atx_headings(tmp_path: Path) -> None:
    text = "Intro line.\n\n# Guide\n\nStart here.\n\n## Install #\nRun it.\n#hashtag is not one\n"
    path = tmp_path / "guide.md"
    path.write_text(text, encoding="utf-8")
    segments = load_file(path)
    assert [(segment.section, segment.text) for segment in segments] == [
        (None, "Intro line.\n\n"),
        ("Guide", "# Guide\n\nStart here.\n\n"),
        ("Install", "## Install #\nRun it.\n#hashtag is not one\n"),
    ]
    assert_offsets(segments, "")


def test_plain_text_has_no_sections(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("# not a heading in a .txt\n\nbody\n", encoding="utf-8")
    assert {segment.section for segment in load_file(path)} == {None}


def test_whitespace_only_file(tmp_path: Path) -> None:
    path = tmp_path / "blank.txt"
    path.write_bytes(b"  \r\n\t\n   \n")
    with pytest.raises(ExtractionFailed, match="^no extractable text"):
        load_file(path)


def test_character_limit_stops_early(tmp_path: Path) -> None:
    path = tmp_path / "long.txt"
    path.write_bytes(b"word " * (BLOCK_BYTES // 5 * 4))
    seen: list[int] = []
    with path.open("rb") as stream, pytest.raises(LimitExceeded, match="characters"):
        for segment in load(stream, path.name, Limits(max_chars=BLOCK_BYTES + 10)):
            seen.append(len(segment.text))
    assert sum(seen) <= BLOCK_BYTES + 10


@pytest.mark.slow
def test_large_file_streams_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "large.md"
    section = "# Heading\n\n" + "Une ligne de texte accentué, 5 € le kilo, répétée.\n\n" * 1000
    with path.open("w", encoding="utf-8") as out:
        for _ in range(50 * 2**20 // len(section.encode()) + 1):
            out.write(section)
    assert path.stat().st_size > 49 * 2**20
    tracemalloc.start()
    try:
        with path.open("rb") as stream:
            total = sum(len(segment.text) for segment in load(stream, path.name))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total > 40 * 2**20
    assert peak < 20 * 2**20, f"peak {peak / 2**20:.1f} MiB"
