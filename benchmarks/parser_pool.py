"""Ingest throughput with the parser pool ÷ parsing in the producer thread, same run.

Before the pool, the pipeline's producer thread parsed each file itself (in
the service process, under the GIL). Each round ingests the same files twice
into fresh data directories, once that way and once through the pool, for two
corpora: SciFact abstracts as text files, and a PDF/DOCX mix made from them.

    .venv/bin/python benchmarks/parser_pool.py --docs 1000 --mix 120
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402
from ingest.chunking import Chunker  # noqa: E402
from ingest.loaders import Limits, load  # noqa: E402
from retrieval.embedders import fast_tokenizer  # noqa: E402
from retrieval.types import Chunk, Segment  # noqa: E402


class InlineParser:
    """The old way: parse in the calling (producer) thread, no limits."""

    size = 1
    _chunker: Chunker | None = None

    def parse(self, path: Path, name: str, limits: Limits, cancelled: Any = None
              ) -> Iterator[Segment]:
        with path.open("rb") as stream:
            yield from load(stream, name, limits)

    def chunks(self, path: Path, name: str, limits: Limits, plan: Any, cancelled: Any = None
               ) -> Iterator[Chunk]:
        """Parsed and chunked here too, as the old way did."""
        if self._chunker is None:  # one for the run, as the service keeps one
            self._chunker = Chunker(plan.settings, fast_tokenizer(plan.tokenizer))
        return self._chunker.chunks(self.parse(path, name, limits), document_id="", source=name,
                              generation=0)

    def close(self) -> None:
        """Nothing to stop."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(common.DEFAULT_CORPUS))
    parser.add_argument("--docs", type=int, default=1000, help="SciFact abstracts as .txt")
    parser.add_argument("--mix", type=int, default=120, help="PDF + DOCX files (half each)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", help="also write the JSON result to this file")
    return parser.parse_args()


def write_mix(corpus: str, folder: Path, count: int) -> list[Path]:
    """PDFs and DOCX files of several pages/sections each, from SciFact abstracts."""
    from tests.filegen import make_docx, make_pdf

    folder.mkdir(parents=True)
    records = common.read_jsonl(corpus, count * 5)
    paths = []
    for i in range(count):
        group = records[i * 5 : i * 5 + 5]
        if i % 2:
            blocks = [b for r in group for b in (("h1", r["title"]), ("p", r["text"]))]
            paths.append(make_docx(folder / f"doc{i}.docx", blocks))
        else:
            pages = [_latin1(f"{r['title']}\n\n{r['text']}") for r in group]
            paths.append(make_pdf(folder / f"doc{i}.pdf", pages))
    return paths


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


def ingest_seconds(files: list[Path], data_dir: Path, inline: bool) -> float:
    """Seconds for ``KnowledgeBase.ingest`` of ``files`` (model loaded and warm)."""
    from app.factory import open_knowledge_base

    kb = open_knowledge_base(common.bench_settings(data_dir))
    if inline:
        kb.parser.close()
        kb.parser = InlineParser()
    try:
        return common.timed_ingest(kb, files)[0]
    finally:
        kb.close()


def one_round(sets: dict[str, list[Path]], work: Path) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name, files in sets.items():
        inline = ingest_seconds(files, work / f"{name}-inline", inline=True)
        pooled = ingest_seconds(files, work / f"{name}-pool", inline=False)
        row[name] = {
            "files": len(files),
            "inline_files_per_s": common.rate(len(files), inline),
            "pool_files_per_s": common.rate(len(files), pooled),
            "ratio_pool_vs_inline": round(inline / pooled, 3),
        }
    return row


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="kb-bench-pool-") as tmp:
        work = Path(tmp)
        sets = {
            "scifact_txt": common.write_scifact_files(args.corpus, work / "txt", args.docs),
            "pdf_docx_mix": write_mix(args.corpus, work / "mix", args.mix),
        }
        rounds = [one_round(sets, work / f"round{i}") for i in range(args.repeats)]
    common.emit({"cpu_count": os.cpu_count(), "rounds": rounds}, args.out)


if __name__ == "__main__":
    main()
