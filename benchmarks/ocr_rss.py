"""Memory of a parsing worker reading a long scan: peak RSS for 300 pages against one.

Renders SciFact abstracts (title, blank line, text, one after another) as scanned A4
pages (``ocr_eval.scan_pages``: 12 pt, 200 dpi, rotated 0.7°, 0.2 % noise), saves the
first ``--pages`` of them as one image-only PDF and parses it with kb's real worker pool
(``ParserPool(1, ParseBudget(120 s, 2048 MB), OcrSettings(max_pages=500))``, engine
``auto``, ``Limits()``), as ingestion does. While it parses, the worker child's
``VmRSS`` and ``VmHWM`` (``/proc/<pid>/status``) are sampled every 0.5 s, and those of
its own children (Tesseract runs) too. A one-page PDF is parsed first the same way, in a
fresh pool, as the baseline: a worker that keeps pages or their text would grow with
the page count. Reported per run: the worker's peak RSS (VmHWM, read when the file is
done), RSS at quarters of the run, elapsed seconds, pages per second, and the page
counts the parse returned:

    .venv/bin/python benchmarks/ocr_rss.py --pages 300 --out benchmarks/out/ocr_rss.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ocr_eval import EVAL, joined, save_pdf, scan_pages  # noqa: E402

from benchmarks import common  # noqa: E402
from ingest.loaders import Limits  # noqa: E402
from ingest.ocr import OcrSettings  # noqa: E402
from ingest.workers import ParseBudget, ParserPool  # noqa: E402

SAMPLE_SECONDS = 0.5
CHARS_PER_PAGE = 2500  # about what one page holds, to know how many abstracts to join


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=300, help="pages of the long scan")
    parser.add_argument("--dpi", type=int, default=200)
    parser.add_argument("--out", help="also write the JSON result to this file")
    return parser.parse_args()


def render(path: Path, pages: int, dpi: int) -> float:
    """Write a ``pages``-page image-only PDF of SciFact abstracts; the seconds it took."""
    started, texts, size = time.perf_counter(), [], 0
    with (EVAL / "scifact" / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            texts.append(joined(json.loads(line)))
            size += len(texts[-1])
            if size > pages * CHARS_PER_PAGE * 1.2:
                break
    images = []
    for image in scan_pages("\n\n".join(texts), dpi):
        images.append(image)
        if len(images) == pages:
            break
    if len(images) < pages:
        raise SystemExit(f"the abstracts filled only {len(images)} pages")
    save_pdf(path, images, dpi)
    return time.perf_counter() - started


def status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of process ``pid`` in MiB (empty once it has gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0]) // 1024
    except OSError:
        pass
    return out


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def is_worker(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"ingest.workers" in f.read()
    except OSError:
        return False


class Sampler(threading.Thread):
    """Samples the worker's memory, and its children's, every ``SAMPLE_SECONDS``."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.started = time.perf_counter()
        self.samples: list[tuple[float, int]] = []  # (seconds, worker VmRSS MiB)
        self.worker: int | None = None
        self.helper_rss = 0  # the largest VmRSS seen in a child of the worker (Tesseract)

    def run(self) -> None:
        while not self.stop.wait(SAMPLE_SECONDS):
            workers = [pid for pid in children(os.getpid()) if is_worker(pid)]
            if not workers:
                continue
            self.worker = workers[0]
            rss = status(self.worker).get("VmRSS")
            if rss is not None:
                self.samples.append((time.perf_counter() - self.started, rss))
            for helper in children(self.worker):
                self.helper_rss = max(self.helper_rss, status(helper).get("VmRSS", 0))


def measure(path: Path, pages: int) -> dict[str, Any]:
    """Parse ``path`` in a fresh one-worker pool, sampling the worker's memory."""
    pool = ParserPool(1, ParseBudget(cpu_seconds=120, memory_mb=2048),
                      OcrSettings(max_pages=500))
    sampler = Sampler()
    sampler.start()
    segments = chars = ocr_segments = 0
    error = None
    started = time.perf_counter()
    try:
        parsed = pool.parse(path, path.name, Limits())
        while True:
            segment = next(parsed)
            segments, chars = segments + 1, chars + len(segment.text)
            ocr_segments += bool(segment.ocr)
    except StopIteration as done:
        counts = asdict(done.value)
    except Exception as exc:  # a budget or a parse failure is a result here
        counts, error = None, f"{type(exc).__name__}: {exc}"
    elapsed = time.perf_counter() - started
    sampler.stop.set()
    sampler.join()
    worker = pool._idle[0].process.pid if pool._idle else sampler.worker
    final = status(worker) if worker else {}
    pool.close()
    rss = [value for _, value in sampler.samples]
    quarters = {}
    for q in (1, 2, 3, 4):
        window = [v for t, v in sampler.samples if (q - 1) / 4 * elapsed <= t <= q / 4 * elapsed]
        quarters[f"q{q}_max_rss_mib"] = max(window) if window else None
    return {
        "pages": pages, "elapsed_s": round(elapsed, 1),
        "pages_per_s": round(pages / elapsed, 3), "page_counts": counts, "error": error,
        "segments": segments, "ocr_segments": ocr_segments, "chars": chars,
        "worker_vmhwm_mib": final.get("VmHWM"), "worker_rss_end_mib": final.get("VmRSS"),
        "sampled_max_rss_mib": max(rss) if rss else None, "samples": len(rss),
        **quarters, "tesseract_max_rss_mib": sampler.helper_rss,
    }


def main() -> None:
    """Render both PDFs, parse each, print and save the figures."""
    args = parse_args()
    result: dict[str, Any] = {"dpi": args.dpi, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="kb-ocr-rss-") as tmp:
        for pages in (1, args.pages):
            path = Path(tmp) / f"scan-{pages}.pdf"
            seconds = render(path, pages, args.dpi)
            run = measure(path, pages)
            run |= {"render_s": round(seconds, 1), "pdf_mib": round(path.stat().st_size / 2**20, 1)}
            result["runs"][str(pages)] = run
            print(json.dumps(run), flush=True)
    one, many = result["runs"]["1"], result["runs"][str(args.pages)]
    if one["worker_vmhwm_mib"] and many["worker_vmhwm_mib"]:
        result["vmhwm_ratio"] = round(many["worker_vmhwm_mib"] / one["worker_vmhwm_mib"], 2)
    common.emit(result, args.out)


if __name__ == "__main__":
    main()
