"""OCR: text from page images (scanned PDF pages, photos), offline, Chinese and English.

Two real engines, chosen by measurement (``benchmarks/ocr_engines.py``):

- ``rapidocr``: the PyPI wheel ``rapidocr-onnxruntime`` (PP-OCRv4 detection and
  recognition on ONNX Runtime). Reads Chinese far better than Tesseract (character
  error rate 0.9 % against 5.3 % at 300 dpi) but drops whole English lines now and then.
- ``tesseract``: Debian's ``tesseract-ocr`` with its language data. Reads English
  better (0.9 % against 7.3 %), Chinese worse.

``auto`` (the default) uses both: the first page is read with Tesseract (Latin
languages; it is quick); a page Tesseract is unsure of (low mean word confidence,
as for Chinese read with English data) is read again with RapidOCR, which then
reads the next pages while their text is not Latin; a page RapidOCR reads as Latin
script goes back to Tesseract. A document in one language costs one extra read at
most (English none).
Either engine alone works too; a missing one is named with the package providing it.

Engines run inside the parsing workers (``ingest.workers``), under their budgets.
"""

from __future__ import annotations

import functools
import io
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from retrieval.errors import ExtractionFailed, LimitExceeded

if TYPE_CHECKING:
    from PIL.Image import Image

ENGINES = ("auto", "rapidocr", "tesseract", "off")
CJK_LANGUAGES = frozenset({"chi_sim", "chi_tra", "chi_sim_vert", "chi_tra_vert", "jpn", "kor"})
DOUBT = 70  # Tesseract's mean word confidence below which another engine is tried
MAX_SIDE = 3600  # pixels: pages are rendered (or photos scaled) to at most this, ~A4 at 300 dpi
RAPIDOCR_PACKAGE = "rapidocr-onnxruntime==1.4.4"
TESSERACT_PACKAGE = "Debian's tesseract-ocr (apt-get install tesseract-ocr tesseract-ocr-eng)"

_CJK = "\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_SPACE_BETWEEN_CJK = re.compile(f"(?<=[{_CJK}])[ \t]+(?=[{_CJK}])")
_BREAK_BETWEEN_CJK = re.compile(f"(?<=[{_CJK}])\n(?=[{_CJK}])")
_HYPHEN_BREAK = re.compile(r"(?<=[a-z])-\n(?=[a-z])")
_HAN = re.compile(f"[{_CJK}]")
_LATIN = re.compile(r"[A-Za-z]")


class OcrUnavailable(ExtractionFailed):
    """The configured engine is not installed, or OCR is off."""


@dataclass(frozen=True)
class OcrSettings:
    """How scanned pages and images are read (``KB_OCR_*``).

    ``max_pages``: most pages of one document to OCR (a larger scan fails at once,
    naming the budget); ``page_seconds``: CPU seconds one page may take.
    """

    engine: str = "auto"
    languages: tuple[str, ...] = ("chi_sim", "eng")
    max_pages: int = 500
    page_seconds: int = 60
    dpi: int = 300

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"KB_OCR must be one of {', '.join(ENGINES)}, not {self.engine!r}")

    @property
    def enabled(self) -> bool:
        return self.engine != "off"

    def pages_error(self, needed: int | None = None) -> LimitExceeded:
        count = f"{needed}" if needed else f"more than {self.max_pages}"
        return LimitExceeded(
            f"the document has {count} pages to OCR (scanned, no text layer), over the limit "
            f"of {self.max_pages} (KB_OCR_MAX_PAGES); split the file or raise the limit"
        )

    def page_error(self, page: int) -> LimitExceeded:
        return LimitExceeded(
            f"OCR of page {page} took more than {self.page_seconds} s of CPU time "
            "(KB_OCR_PAGE_SECONDS) and was stopped; the scan may be huge or noisy: "
            "rescan it at 300 dpi, or raise the limit"
        )


@dataclass
class PageCounts:
    """Pages of a paged document (PDF, image frames): all, read by OCR, and blank ones
    (no text layer, and OCR found none)."""

    pages: int = 0
    ocr: int = 0
    blank: int = 0


class Engine(Protocol):
    """One OCR engine: a page image in, its text out (lines separated by newlines)."""

    name: str

    def read(self, image: Image) -> str:
        """The text on ``image``; empty when there is none."""


def tidy(text: str) -> str:
    """Engine output as document text: no spaces or line breaks inside Chinese runs (the
    renderer's, not the author's), hyphenated English line ends joined."""
    text = _SPACE_BETWEEN_CJK.sub("", text.replace("\r", "").replace("\f", "\n"))
    text = _BREAK_BETWEEN_CJK.sub("", text)
    return _HYPHEN_BREAK.sub("", text).strip()


def is_latin(text: str) -> bool:
    """True when ``text`` is mostly Latin letters (and has some)."""
    latin, han = len(_LATIN.findall(text)), len(_HAN.findall(text))
    return latin >= 20 and han * 10 < latin


class RapidOcr:
    """RapidOCR: PP-OCRv4 Chinese and English models on ONNX Runtime, in this process."""

    name = "rapidocr"

    def __init__(self) -> None:
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:
            raise OcrUnavailable(
                f"the OCR engine rapidocr is not installed: pip install {RAPIDOCR_PACKAGE}"
            ) from exc
        threads = min(2, os.cpu_count() or 1)  # more threads cost address space, not speed
        self._engine = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1)

    def read(self, image: Image) -> str:
        import numpy as np

        result, _ = self._engine(np.asarray(image.convert("RGB")))
        return "\n".join(str(line[1]) for line in result or [])


class Tesseract:
    """Tesseract 5 as a program, one page per run, with the configured language data."""

    name = "tesseract"

    def __init__(self, languages: tuple[str, ...], seconds: int) -> None:
        program = shutil.which("tesseract")
        if program is None:
            raise OcrUnavailable(f"the OCR engine tesseract is not installed: {TESSERACT_PACKAGE}")
        installed = tesseract_languages(program)
        usable = [lang for lang in languages if lang in installed]
        if not usable:
            raise OcrUnavailable(
                f"tesseract has no data for {'+'.join(languages)} (installed: "
                f"{', '.join(sorted(installed)) or 'none'}); install e.g. tesseract-ocr-"
                f"{languages[0].replace('_', '-')}"
            )
        self.program, self.languages, self.seconds = program, "+".join(usable), seconds
        self.doubtful = False

    def read(self, image: Image) -> str:
        """The page's text; ``doubtful`` says afterwards whether Tesseract was unsure of it
        (mean word confidence under ``DOUBT``, as when it reads a script it has no data for)."""
        png = io.BytesIO()
        image.save(png, format="PNG")
        done = subprocess.run(  # past the page's seconds: TimeoutExpired (Reader reports it)
            [self.program, "stdin", "stdout", "-l", self.languages, "--psm", "3", "tsv"],
            input=png.getvalue(), capture_output=True, timeout=self.seconds,
            env={**os.environ, "OMP_THREAD_LIMIT": "1"},
        )
        if done.returncode != 0:
            detail = done.stderr.decode(errors="replace").strip()[-300:]
            raise ExtractionFailed(f"tesseract could not read a page: {detail}")
        text, confidence = _from_tsv(done.stdout.decode(errors="replace"))
        self.doubtful = confidence < DOUBT
        return text


def _from_tsv(tsv: str) -> tuple[str, float]:
    """Text (lines, paragraphs) and mean word confidence from Tesseract's TSV output."""
    lines: dict[tuple[str, ...], list[str]] = {}
    confidences = []
    for row in tsv.splitlines()[1:]:
        cells = row.split("\t")
        if len(cells) < 12 or not cells[11].strip() or float(cells[10]) < 0:
            continue
        lines.setdefault(tuple(cells[1:5]), []).append(cells[11])
        confidences.append(float(cells[10]))
    out, paragraph = [], None
    for (page, block, par, _), words in lines.items():
        if paragraph is not None and paragraph != (page, block, par):
            out.append("")
        out.append(" ".join(words))
        paragraph = (page, block, par)
    mean = sum(confidences) / len(confidences) if confidences else 100.0
    return "\n".join(out), mean


@functools.cache
def tesseract_languages(program: str) -> frozenset[str]:
    """The language data Tesseract has installed."""
    done = subprocess.run([program, "--list-langs"], capture_output=True, text=True, check=False)
    return frozenset(line.strip() for line in done.stdout.splitlines()[1:] if line.strip())


@functools.cache
def _rapidocr() -> RapidOcr:
    return RapidOcr()  # loading the models takes about a second: once per worker


def engine_for(settings: OcrSettings, kind: str) -> Engine:
    """The engine ``kind`` ("rapidocr" or "tesseract") set up for ``settings``."""
    if kind == "rapidocr":
        return _rapidocr()
    latin = tuple(lang for lang in settings.languages if lang not in CJK_LANGUAGES)
    chosen = settings.languages if settings.engine == "tesseract" else latin
    return Tesseract(chosen or ("eng",), settings.page_seconds)


def available(settings: OcrSettings) -> tuple[list[str], list[str]]:
    """Engines ``settings`` would use that are installed, and messages for those missing."""
    wanted = {"auto": ["rapidocr", "tesseract"], "off": []}.get(settings.engine,
                                                                [settings.engine])
    found, missing = [], []
    for kind in wanted:
        try:
            if kind == "rapidocr":
                import importlib.util

                if importlib.util.find_spec("rapidocr_onnxruntime") is None:
                    raise OcrUnavailable(f"rapidocr is not installed: pip install "
                                         f"{RAPIDOCR_PACKAGE}")
            else:
                engine_for(settings, kind)
            found.append(kind)
        except OcrUnavailable as exc:
            missing.append(str(exc))
    return found, missing


class Reader:
    """Reads the page images of one document with the configured engine, or for
    ``auto`` with the engine that suits each page's script (see the module's doc), and
    counts the pages it reads.

    ``before_page(page)`` runs before each page is read (the worker grants the page
    its CPU budget and tells the parent), ``after_page()`` after it.
    """

    def __init__(
        self, settings: OcrSettings, before_page: Callable[[int], None] = lambda _: None,
        after_page: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings, self.before_page, self.after_page = settings, before_page, after_page
        self.engine: Engine | None = None  # the engine that read the last page
        self._engines: dict[str, Engine | None] = {}
        self.counts = PageCounts()

    def read(self, image: Image, page: int) -> str:
        """The tidied text of one page image; raise if OCR is off or over its page budget."""
        if not self.settings.enabled:
            raise OcrUnavailable(
                f"page {page} is an image without a text layer and needs OCR, which is off "
                "(KB_OCR=off); set KB_OCR=auto to read scans and photos"
            )
        if self.counts.ocr >= self.settings.max_pages:
            raise self.settings.pages_error()
        self.counts.ocr += 1
        self.before_page(page)
        try:
            return tidy(self._read(_bounded(image)))
        except subprocess.TimeoutExpired:  # Tesseract, a program of its own, ran too long
            raise self.settings.page_error(page) from None
        finally:
            self.after_page()

    def _read(self, image: Image) -> str:
        if self.settings.engine != "auto":
            self.engine = self.engine or engine_for(self.settings, self.settings.engine)
            return self.engine.read(image)
        if self.engine is None:  # the first page: Tesseract is quick, and says when unsure
            self.engine = self._engine("tesseract") or self._engine("rapidocr")
            if self.engine is None:
                engine_for(self.settings, "rapidocr")  # raises, naming the package
        assert self.engine is not None
        return self._auto(image, self.engine)

    def _auto(self, image: Image, engine: Engine) -> str:
        """Read with the engine the last page suited; try the other one when the text
        suggests the other script (Latin from RapidOCR, doubt from Tesseract)."""
        text = engine.read(image)
        if isinstance(engine, Tesseract):
            other = self._engine("rapidocr") if engine.doubtful else None
            if other is not None:
                second = other.read(image)
                if second.strip() and not is_latin(second):
                    self.engine = other
                    return second
            return text
        other = self._engine("tesseract") if is_latin(text) else None
        if other is None:
            return text
        second = other.read(image)
        if isinstance(other, Tesseract) and other.doubtful:
            return text
        self.engine = other
        return second

    def _engine(self, kind: str) -> Engine | None:
        """The engine ``kind``, or None when it is not installed."""
        if kind not in self._engines:
            try:
                self._engines[kind] = engine_for(self.settings, kind)
            except OcrUnavailable:
                self._engines[kind] = None
        return self._engines[kind]


def _bounded(image: Image) -> Image:
    """``image`` in grey or colour, scaled down to ``MAX_SIDE`` pixels at most."""
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    longest = max(image.size)
    if longest > MAX_SIDE:
        scale = MAX_SIDE / longest
        image = image.resize((max(1, round(image.width * scale)),
                              max(1, round(image.height * scale))))
    return image


def render_scale(width_points: float, height_points: float, dpi: int) -> float:
    """PDFium scale for a page: ``dpi``, or less so its longest side fits ``MAX_SIDE``."""
    return min(dpi / 72, MAX_SIDE / max(1.0, width_points, height_points))

