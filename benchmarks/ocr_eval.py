"""Retrieval quality on scanned documents: `kb eval` on a slice of each eval set, as text
and as image-only PDFs read by OCR.

For each set (SciFact, English; xquad-zh, Chinese) the script takes the first
``--queries`` queries of the split that have judgements, all the documents judged for
them, and distractors in corpus order until the slice has ``--docs`` documents. It writes
two BEIR folders under ``--out-dir``: ``<set>-text/`` (corpus.jsonl, queries.jsonl,
qrels/<split>.tsv of the slice) and ``<set>-scan/``, the same plus ``files/<id>.pdf``:
each document's text (title, blank line, body, as `kb eval` joins them) rendered as
a scan: 12 pt WenQuanYi Zen Hei on grey A4 pages at 200 dpi, rotated 0.7°, 0.2 % of
the pixels flipped, as many pages as the text needs, saved as an image-only PDF (no
text layer, so kb reads every page by OCR). Each folder is then scored by
``kb eval <folder> --split <split> --json`` in a fresh ``KB_DATA_DIR`` of its own
(offline: ``HF_HUB_OFFLINE=1``), and the script prints nDCG@10 per set and search mode
for text and scan, their difference, the indexing seconds, and documents that failed
(``--parse-memory-mb`` sets ``KB_PARSE_MEMORY_MB`` for both). Needs what ``make test``
installs (Tesseract, RapidOCR, the CJK font):

    .venv/bin/python benchmarks/ocr_eval.py --out benchmarks/out/ocr_eval.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT.parent / "shared" / "eval"
KB = ROOT / ".venv" / "bin" / "kb"
FONT = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"
A4_INCHES = (8.27, 11.69)
POINTS, LINE_SPACING = 12, 1.6  # as tests/filegen.py scan_image
SPLITS = ("train", "test", "dev")  # the first of these with qrels is used
_CJK = "\u2e80-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef"
_UNITS = re.compile(f"\\s+|[{_CJK}]|[^\\s{_CJK}]+")  # spaces, one CJK character, a word


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="scifact,xquad-zh", help="eval sets, comma-separated")
    parser.add_argument("--queries", type=int, default=50, help="queries per set")
    parser.add_argument("--docs", type=int, default=150, help="documents per set (at least)")
    parser.add_argument("--out-dir", type=Path, default=Path("/tmp/kb-ocr-eval"))
    parser.add_argument("--dpi", type=int, default=200)
    parser.add_argument("--rotate", type=float, default=0.7, help="degrees of skew")
    parser.add_argument("--noise", type=float, default=0.002, help="share of flipped pixels")
    parser.add_argument("--parse-memory-mb", type=int,
                        help="KB_PARSE_MEMORY_MB for kb eval (default: kb's own)")
    parser.add_argument("--out", help="also write the JSON result to this file")
    return parser.parse_args()


# -- rendering ------------------------------------------------------------------------


def wrap(text: str, measure: Callable[[str], float], width: float) -> list[str]:
    """Lines no wider than ``width``: paragraphs kept (an empty line between), English
    wrapped at spaces, Chinese between any two characters; a word wider than a line is
    cut."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for unit in _UNITS.findall(paragraph.strip()):
            unit = " " if unit.isspace() else unit
            if measure(line + unit) <= width or not line:
                line += unit
            else:
                lines.append(line.rstrip())
                line = "" if unit == " " else unit
            while measure(line) > width and len(line) > 1:  # a word wider than a line
                cut = len(line) - 1
                while cut > 1 and measure(line[:cut]) > width:
                    cut -= 1
                lines.append(line[:cut])
                line = line[cut:]
        lines.append(line.rstrip())
    return lines


def scan_pages(
    text: str, dpi: int = 200, rotate: float = 0.7, noise: float = 0.002, seed: int = 0
) -> Iterator[Any]:
    """Grey A4 page images of ``text`` (PIL, mode L), as many as it needs, each slightly
    rotated and with ``noise`` of its pixels flipped, as a scanner leaves them."""
    from PIL import Image, ImageDraw, ImageFont

    face = ImageFont.truetype(FONT, round(POINTS * dpi / 72))
    width, height = round(A4_INCHES[0] * dpi), round(A4_INCHES[1] * dpi)
    margin, line_height = dpi, round(face.size * LINE_SPACING)
    lines = wrap(text, face.getlength, width - 2 * margin)
    per_page = max(1, (height - 2 * margin) // line_height)
    while lines and not lines[-1]:
        lines.pop()
    rng = random.Random(seed)
    for first in range(0, max(1, len(lines)), per_page):
        page = Image.new("L", (width, height), 255)
        draw = ImageDraw.Draw(page)
        for n, line in enumerate(lines[first:first + per_page]):
            draw.text((margin, margin + n * line_height), line, font=face, fill=0)
        if rotate:
            page = page.rotate(rotate, expand=False, fillcolor=255)
        pixels = page.load()
        for _ in range(int(width * height * noise)):
            x, y = rng.randrange(width), rng.randrange(height)
            pixels[x, y] = 255 - pixels[x, y]
        yield page


def save_pdf(path: Path, pages: list[Any], dpi: int) -> None:
    """An image-only PDF of ``pages``."""
    pages[0].save(path, "PDF", save_all=True, append_images=pages[1:], resolution=dpi)


# -- the slices -----------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """query id -> {document id: grade}, as retrieval.evaluation reads them (no header)."""
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as f:
        for row in csv.reader(f, delimiter="\t"):
            if len(row) >= 3 and row[2].strip().lstrip("-").isdigit():
                qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    return qrels


def joined(row: dict[str, Any]) -> str:
    """A corpus entry's text as retrieval.evaluation.Dataset.corpus joins it."""
    title, body = (row.get("title") or "").strip(), (row.get("text") or "").strip()
    return f"{title}\n\n{body}" if title else body


def build_slice(name: str, queries: int, docs: int, out_dir: Path) -> dict[str, Any]:
    """Write ``<name>-text/``, the slice as a BEIR folder; return what the slice holds."""
    source = EVAL / name
    split = next(s for s in SPLITS if (source / "qrels" / f"{s}.tsv").is_file())
    qrels = read_qrels(source / "qrels" / f"{split}.tsv")
    chosen = [q for q in read_jsonl(source / "queries.jsonl") if str(q["_id"]) in qrels]
    chosen = chosen[:queries]
    judged = {doc for q in chosen for doc in qrels[str(q["_id"])]}
    corpus = read_jsonl(source / "corpus.jsonl")
    keep, distractors = set(judged), 0
    for row in corpus:
        if len(keep) >= docs:
            break
        if str(row["_id"]) not in keep:
            keep.add(str(row["_id"]))
            distractors += 1
    rows = [row for row in corpus if str(row["_id"]) in keep]
    folder = out_dir / f"{name}-text"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "qrels").mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(q, ensure_ascii=False) + "\n" for q in chosen)
    with (folder / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q in chosen:
            for doc, grade in qrels[str(q["_id"])].items():
                f.write(f"{q['_id']}\t{doc}\t{grade}\n")
    missing = judged - {str(row["_id"]) for row in rows}
    return {"split": split, "queries": len(chosen), "documents": len(rows),
            "judged_documents": len(judged), "distractors": distractors,
            "judged_missing_from_corpus": len(missing), "rows": rows}


def build_scan(name: str, rows: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """Copy ``<name>-text/`` to ``<name>-scan/`` and add ``files/<id>.pdf`` for each row."""
    text, scan = args.out_dir / f"{name}-text", args.out_dir / f"{name}-scan"
    shutil.rmtree(scan, ignore_errors=True)
    shutil.copytree(text, scan)
    (scan / "files").mkdir()
    pages, started = [], time.perf_counter()
    for n, row in enumerate(rows):
        images = list(scan_pages(joined(row), args.dpi, args.rotate, args.noise, seed=n))
        save_pdf(scan / "files" / f"{row['_id']}.pdf", images, args.dpi)
        pages.append(len(images))
    return {"pages": sum(pages), "max_pages_per_document": max(pages),
            "render_seconds": round(time.perf_counter() - started, 1)}


# -- kb eval --------------------------------------------------------------------------


def kb_eval(
    folder: Path, split: str, data_dir: Path, memory_mb: int | None = None
) -> dict[str, Any]:
    """``kb eval --json`` on ``folder`` in a fresh data directory; its result, the wall
    time, and the warnings it printed (failed documents)."""
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    env = {**os.environ, "KB_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    if memory_mb:
        env["KB_PARSE_MEMORY_MB"] = str(memory_mb)
    started = time.perf_counter()
    done = subprocess.run([str(KB), "eval", str(folder), "--split", split, "--json"],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - started
    (data_dir / "eval.stderr").write_text(done.stderr, encoding="utf-8")
    if done.returncode != 0:
        sys.exit(f"kb eval {folder} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    result["wall_seconds"] = round(seconds, 1)
    result["warnings"] = [line for line in done.stderr.splitlines()
                          if line.startswith(("warning", "error"))]
    return result


def table(result: dict[str, Any]) -> str:
    """The nDCG@10 table, text against scan, and the indexing times."""
    out = [f"{'set':<10}{'mode':<10}{'text':>9}{'scan':>9}{'diff':>9}   (nDCG@10)"]
    for name, figures in result["sets"].items():
        text, scan = figures["text"]["modes"], figures["scan"]["modes"]
        for mode in text:
            a, b = text[mode]["ndcg@10"], scan[mode]["ndcg@10"]
            out.append(f"{name:<10}{mode:<10}{a:>9.4f}{b:>9.4f}{b - a:>+9.4f}")
    out.append("")
    out.append(f"{'set':<10}{'kind':<6}{'indexed':>9}{'pages':>7}{'index s':>9}{'wall s':>9}")
    for name, figures in result["sets"].items():
        for kind in ("text", "scan"):
            run = figures[kind]
            pages = figures["slice"]["pages"] if kind == "scan" else "-"
            indexed = f"{run['documents']}/{figures['slice']['documents']}"
            out.append(f"{name:<10}{kind:<6}{indexed:>9}{pages:>7}"
                       f"{run['index_seconds']:>9}{run['wall_seconds']:>9}")
    return "\n".join(out)


def main() -> None:
    """Build the slices, render the scans, run kb eval on both, print and save."""
    args = parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "queries": args.queries, "docs": args.docs, "dpi": args.dpi,
        "rotate_degrees": args.rotate, "noise": args.noise,
        "parse_memory_mb": args.parse_memory_mb, "sets": {},
    }
    for name in args.sets.split(","):
        info = build_slice(name, args.queries, args.docs, args.out_dir)
        rows = info.pop("rows")
        info |= build_scan(name, rows, args)
        print(f"{name}: {info}", flush=True)
        figures: dict[str, Any] = {"slice": info}
        for kind in ("text", "scan"):
            figures[kind] = kb_eval(args.out_dir / f"{name}-{kind}", info["split"],
                                    args.out_dir / "data" / f"{name}-{kind}",
                                    args.parse_memory_mb)
            print(f"{name}-{kind}: {json.dumps(figures[kind])}", flush=True)
        result["sets"][name] = figures
    text = json.dumps(result, indent=2)
    print(text)
    print(table(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
