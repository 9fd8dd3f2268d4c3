"""Plain text and Markdown: encoding detection and streaming decode into segments."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, BinaryIO

from charset_normalizer import from_bytes

from retrieval.errors import LimitExceeded
from retrieval.types import Segment

if TYPE_CHECKING:
    from ingest.loaders import Limits

BLOCK_BYTES = 1 << 20
SEGMENT_CHARS = 64 * 1024
DETECT_BYTES = 64 * 1024

# Longest BOMs first: the UTF-32-LE BOM starts with the UTF-16-LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_ATX_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$", re.MULTILINE)
_WESTERN_PUNCTUATION = frozenset("€‚„…†‡‰‹›‘’“”•–—™\xa0¡¢£¤¥§©«®°±²³´µ·»¿×÷")
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]{3,}")
_HAN = re.compile("[\u4e00-\u9fff]")


def bom_encoding(head: bytes) -> str | None:
    """Return the codec named by a byte-order mark at the start of ``head``, if any."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    return None


def sniff_utf16(head: bytes) -> str | None:
    """Recognise BOM-less UTF-16: mostly ASCII by where its NUL bytes fall, CJK by decoding."""
    pairs = len(head) // 2
    if pairs < 4:
        return None
    nul_even = head[0 : pairs * 2 : 2].count(0)
    nul_odd = head[1 : pairs * 2 : 2].count(0)
    if nul_odd >= pairs * 0.3 and nul_even == 0:
        return "utf-16-le"
    if nul_even >= pairs * 0.3 and nul_odd == 0:
        return "utf-16-be"
    return None


def sniff_han_utf16(head: bytes) -> str | None:
    """BOM-less UTF-16 Chinese: no NUL bytes, but it decodes to mostly Han, all printable.

    Only for bytes that are not UTF-8 (ASCII letter pairs read as UTF-16 are
    Han too: "aa" is U+6161). UTF-8 or GB18030 Chinese read as UTF-16 gives
    Hangul, private-use and unassigned code points instead.
    """
    head = head[: len(head) // 2 * 2]
    if len(head) < 16 or _is_utf8(head, complete=False):
        return None
    for codec in ("utf-16-le", "utf-16-be"):
        try:
            decoded = head.decode(codec)
        except UnicodeDecodeError:
            continue
        printable = all(c.isprintable() or c in "\r\n\t" for c in decoded)
        if printable and len(_HAN.findall(decoded)) >= len(decoded) * 0.5:
            return codec
    return None


def _is_utf8(head: bytes, complete: bool) -> bool:
    """True if ``head`` is valid UTF-8 (a cut final character is fine unless ``complete``)."""
    try:
        codecs.getincrementaldecoder("utf-8")("strict").decode(head, final=complete)
    except UnicodeDecodeError:
        return False
    return True


def _looks_western(head: bytes) -> bool:
    """True if the non-ASCII bytes read as scattered cp1252 letters and punctuation (é, ß, €)."""
    try:
        text = head.decode("cp1252")
    except UnicodeDecodeError:
        return False
    high = [char for char in text if ord(char) > 127]
    in_runs = sum(len(run) for run in _NON_ASCII_RUN.findall(text))
    # Western words have an accent here and there; CJK and Cyrillic come in long runs.
    return in_runs <= len(high) // 10 and all(
        char.isalpha() or char in _WESTERN_PUNCTUATION for char in high
    )


def detect_encoding(head: bytes, complete: bool = False) -> str:
    """Pick a codec for a text file from its first bytes (``complete``: the whole file)."""
    named = bom_encoding(head) or sniff_utf16(head)
    if named:
        return named
    if _is_utf8(head, complete):
        return "utf-8"
    named = sniff_han_utf16(head)
    if named:
        return named
    # charset-normalizer often takes Western text for cp1250 or mac_turkish; check cp1252 first.
    if _looks_western(head):
        return "cp1252"
    best = from_bytes(head).best()
    return best.encoding if best is not None else "cp1252"


def normalise_newlines(text: str) -> str:
    """Turn CRLF and lone CR into LF and drop NULs and byte-order marks."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("\x00", "").replace("\ufeff", "")


def decoded_blocks(stream: BinaryIO, encoding: str) -> Iterator[str]:
    """Decode ``stream`` block by block into newline-normalised text."""
    # errors="replace": detection saw only the head; a stray byte later must not fail the file.
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    held_cr = ""
    while True:
        block = stream.read(BLOCK_BYTES)
        text = held_cr + decoder.decode(block, final=not block)
        held_cr = ""
        # A CR at the end of a block may be the first half of a CRLF.
        if block and text.endswith("\r"):
            text, held_cr = text[:-1], "\r"
        yield normalise_newlines(text)
        if not block:
            return


def cut_point(text: str, start: int, size: int) -> int:
    """Index at which to end a piece of ``text`` starting at ``start``: a paragraph break if any."""
    end = start + size
    if end >= len(text):
        return len(text)
    # Search only the second half so that a break near the start cannot leave a tiny piece.
    for separator in ("\n\n", "\n", " "):
        found = text.rfind(separator, start + size // 2, end)
        if found >= 0:
            return found + len(separator)
    return end


def split_text(text: str, size: int = SEGMENT_CHARS) -> Iterator[str]:
    """Split ``text`` into consecutive pieces of at most ``size`` characters at breaks."""
    start = 0
    while start < len(text):
        end = cut_point(text, start, size)
        yield text[start:end]
        start = end


def text_segments(blocks: Iterable[str], limits: Limits) -> Iterator[Segment]:
    """Re-cut a stream of text blocks into ~64 KiB segments ending at paragraph breaks."""
    buffer, offset = "", 0
    for block in blocks:
        buffer += block
        if offset + len(buffer) > limits.max_chars:
            raise LimitExceeded(
                f"text has more than {limits.max_chars:,} characters, over the limit; "
                "split it into smaller files"
            )
        start = 0
        # Keep the tail: the next block may extend its last paragraph.
        while len(buffer) - start >= 2 * SEGMENT_CHARS:
            end = cut_point(buffer, start, SEGMENT_CHARS)
            yield Segment(buffer[start:end], offset)
            offset, start = offset + end - start, end
        buffer = buffer[start:]
    for piece in split_text(buffer):
        yield Segment(piece, offset)
        offset += len(piece)


def load_text(stream: BinaryIO, limits: Limits) -> Iterator[Segment]:
    """Stream a plain-text file as segments, whatever its encoding."""
    head = stream.read(DETECT_BYTES)
    encoding = detect_encoding(head, complete=len(head) < DETECT_BYTES)
    stream.seek(0)
    yield from text_segments(decoded_blocks(stream, encoding), limits)


def markdown_sections(segments: Iterable[Segment]) -> Iterator[Segment]:
    """Split segments at Markdown ATX headings and set each piece's ``section``."""
    section: str | None = None
    for segment in segments:
        text, start = segment.text, 0
        for match in _ATX_HEADING.finditer(text):
            if match.start() > start:
                yield Segment(text[start : match.start()], segment.offset + start, section=section)
                start = match.start()
            section = match.group(1)
        yield Segment(text[start:], segment.offset + start, section=section)
