"""OCR engines on pages this script renders: character error rate and pages per second.

Groundwork for choosing kb's default OCR engine (scanned PDFs and images). Each page is
one paragraph (an English SciFact abstract, or Chinese xquad-zh sentences) drawn black
on white with a CJK-capable font, at 150 and 300 dpi (A4 width), rotated slightly and
with pixel noise, as a scanner or a phone camera leaves it. Each engine reads the same
pages in the same run:

- ``rapidocr``: the PyPI wheel ``rapidocr-onnxruntime`` (PP-OCRv4 detection and
  recognition, Chinese and English, on ONNX Runtime);
- ``tesseract``: Debian's ``tesseract-ocr`` 5 with ``eng`` and ``chi_sim`` data, run as
  the ``tesseract`` program (``-l eng`` for English pages, ``-l chi_sim`` for Chinese);
- ``kb-auto``: kb's own reader (``ingest.ocr``, ``KB_OCR=auto``), which is not told the
  language: RapidOCR first, Tesseract for pages in Latin script.

The character error rate is the edit distance between what the engine read and the
paragraph, over the paragraph's length, both with whitespace removed (Chinese has none,
and line breaks are the renderer's) and NFKC-normalised (full- and half-width
punctuation alike). Needs what ``make test`` installs (Tesseract, the CJK font):

    .venv/bin/python benchmarks/ocr_engines.py --pages 6 --out benchmarks/out/ocr.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402

EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval"
FONT = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"
A4_WIDTH_INCHES, MARGIN_INCHES, FONT_POINTS = 8.27, 0.8, 11


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=6, help="pages per language and dpi")
    parser.add_argument("--dpi", default="150,300", help="resolutions, comma-separated")
    parser.add_argument("--rotate", type=float, default=1.5, help="degrees of skew")
    parser.add_argument("--noise", type=float, default=0.005, help="share of flipped pixels")
    parser.add_argument("--font", default=FONT, help="a font with Latin and CJK glyphs")
    parser.add_argument("--out", help="also write the JSON result to this file")
    return parser.parse_args()


def paragraphs(language: str, count: int) -> list[str]:
    """``count`` paragraphs of 300 to 1,500 characters: SciFact abstracts, or consecutive
    xquad-zh entries (one or a few sentences each) joined to 400 or more."""
    name = "scifact" if language == "en" else "xquad-zh"
    out, joined = [], ""
    with (EVAL / name / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            text = json.loads(line)["text"].strip()
            if language == "zh":
                joined += text
                text, joined = (joined, "") if len(joined) >= 400 else ("", joined)
            if 300 <= len(text) <= 1500:
                out.append(text)
            if len(out) == count:
                return out
    return out


def render(text: str, language: str, dpi: int, rotate: float, noise: float, font: str) -> Any:
    """A grey-scale page image of ``text``, wrapped to the A4 text width."""
    from PIL import Image, ImageDraw, ImageFont

    face = ImageFont.truetype(font, round(FONT_POINTS * dpi / 72))
    width = round(A4_WIDTH_INCHES * dpi)
    margin = round(MARGIN_INCHES * dpi)
    lines = wrap(text, language, lambda s: face.getlength(s), width - 2 * margin)
    line_height = round(face.size * 1.5)
    height = max(round(11.69 * dpi), 2 * margin + line_height * len(lines))
    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    for n, line in enumerate(lines):
        draw.text((margin, margin + n * line_height), line, font=face, fill=0)
    page = page.rotate(rotate, expand=True, fillcolor=255)
    rng = random.Random(len(text) + dpi)
    pixels = page.load()
    for _ in range(int(page.width * page.height * noise)):
        x, y = rng.randrange(page.width), rng.randrange(page.height)
        pixels[x, y] = 255 - pixels[x, y]
    return page


def wrap(text: str, language: str, measure: Callable[[str], float], width: float) -> list[str]:
    """Lines of ``text`` no wider than ``width``: by words in English, by characters in Chinese."""
    units = text.split() if language == "en" else list(text)
    joiner = " " if language == "en" else ""
    lines, line = [], ""
    for unit in units:
        candidate = f"{line}{joiner}{unit}" if line else unit
        if measure(candidate) <= width:
            line = candidate
        else:
            lines.append(line)
            line = unit
    return [*lines, line] if line else lines


def rapidocr_reader() -> Callable[[Path, str], str]:
    """RapidOCR (PP-OCRv4 on ONNX Runtime): its text lines in reading order."""
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR()

    def read(path: Path, language: str) -> str:
        result, _ = engine(str(path))
        return "\n".join(item[1] for item in result or [])

    return read


def tesseract_reader() -> Callable[[Path, str], str]:
    """Tesseract 5 as a program, with the page's language's data."""

    def read(path: Path, language: str) -> str:
        data = "eng" if language == "en" else "chi_sim"
        done = subprocess.run(["tesseract", str(path), "stdout", "-l", data],
                              capture_output=True, text=True, check=True)
        return done.stdout

    return read


def kb_reader() -> Callable[[Path, str], str]:
    """kb's own reader with ``KB_OCR=auto``, as a new document each page (the engine rule
    starts afresh), with kb's clean-up of the engines' output."""
    from PIL import Image

    from ingest.ocr import OcrSettings, Reader

    def read(path: Path, language: str) -> str:
        with Image.open(path) as image:
            return Reader(OcrSettings()).read(image, 1)

    return read


def cer(read: str, truth: str) -> float:
    """Character error rate: edit distance over the truth's length, whitespace removed and
    both sides NFKC-normalised (a full-width comma read as a half-width one is no error)."""
    a, b = ("".join(unicodedata.normalize("NFKC", s).split()) for s in (read, truth))
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1] / max(1, len(b))


def main() -> None:
    """Render, read with each engine, print the figures as JSON."""
    args = parse_args()
    readers = {"rapidocr": rapidocr_reader(), "tesseract": tesseract_reader(),
               "kb-auto": kb_reader()}
    result: dict[str, Any] = {"pages_per_set": args.pages, "rotate_degrees": args.rotate,
                              "noise": args.noise, "sets": {}}
    with tempfile.TemporaryDirectory(prefix="kb-ocr-") as tmp:
        for language in ("en", "zh"):
            texts = paragraphs(language, args.pages)
            for dpi in (int(d) for d in args.dpi.split(",")):
                pages = []
                for n, text in enumerate(texts):
                    path = Path(tmp) / f"{language}-{dpi}-{n}.png"
                    render(text, language, dpi, args.rotate, args.noise, args.font).save(path)
                    pages.append((path, text))
                figures = {}
                for name, read in readers.items():
                    read(pages[0][0], language)  # warm-up: model loading is not per page
                    rates, started = [], time.perf_counter()
                    for path, text in pages:
                        rates.append(cer(read(path, language), text))
                    seconds = time.perf_counter() - started
                    figures[name] = {
                        "cer_mean": round(statistics.mean(rates), 4),
                        "cer_max": round(max(rates), 4),
                        "pages_per_s": round(len(pages) / seconds, 3),
                    }
                result["sets"][f"{language}-{dpi}dpi"] = figures
                print(f"{language} {dpi} dpi: {figures}", flush=True)
    common.emit(result, args.out)


if __name__ == "__main__":
    main()
