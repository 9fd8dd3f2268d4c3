"""What an Open WebUI user waits for: a large PDF's upload, and the first token of an answer.

Starts real `kb serve` and real Open WebUI (`kb webui`, from the venv that
`make webui-env` builds), then measures, each against a baseline from the same run:

- ingest: a PDF of ``--pages`` pages (SciFact abstracts) sent to kb's
  ``PUT /process`` directly and uploaded through Open WebUI's API, against
  parsing, chunking and embedding the same file in this process with the same
  model (raw work, no HTTP, no store);
- time to first answer token (TTFT) for SciFact questions asked through Open
  WebUI's chat API and through kb's own ``/v1/chat/completions``, against kb's
  ``/v1/search`` latency for the same questions (embed + vector query).

``--tiny-chat`` answers with the tiny vLLM chat model (needs KB_TEST_VLLM_PYTHON,
as `make test` sets it); without it kb answers extractively.

    .venv/bin/python benchmarks/webui_latency.py --pages 300 --questions 30
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402
from tests.e2e.conftest import start_stack  # noqa: E402
from tests.openwebui import API_KEY, WebUIClient  # noqa: E402

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=300, help="pages of the PDF")
    parser.add_argument("--questions", type=int, default=30, help="timed questions per path")
    parser.add_argument("--tiny-chat", action="store_true", help="answer with tiny vLLM chat")
    parser.add_argument("--corpus", default=str(common.DEFAULT_CORPUS), help="corpus.jsonl")
    parser.add_argument("--out", help="also write the JSON result to this file")
    return parser.parse_args()


def make_pdf(path: Path, corpus: str, pages: int, skip: int = 0) -> Path:
    """A PDF with two SciFact abstracts per page, after ``skip`` abstracts (Latin-1 only)."""
    from fpdf import FPDF

    if path.exists():
        return path
    records = common.read_jsonl(corpus, skip + pages * 2)[skip:]
    pdf = FPDF()
    pdf.set_font("helvetica", size=9)
    for i in range(pages):
        text = "\n\n".join(common.abstract_text(r) for r in records[2 * i : 2 * i + 2])
        pdf.add_page()
        pdf.multi_cell(0, 4, text.encode("latin-1", "replace").decode("latin-1"))
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))
    return path


def raw_ingest_seconds(pdf: Path) -> tuple[float, int]:
    """Parse, chunk and embed the PDF in this process with kb's own parts; seconds and chunks."""
    from ingest.chunking import Chunker, ChunkSettings
    from ingest.loaders import Limits, load
    from retrieval.embedders import LocalEmbedder

    embedder = LocalEmbedder()
    embedder.embed_documents(["warm-up"])
    settings = ChunkSettings().fitted(embedder.max_tokens, embedder.special_tokens)
    chunker = Chunker(settings, embedder.count_tokens)
    started = time.perf_counter()
    with pdf.open("rb") as f:
        chunks = list(chunker.chunks(load(f, pdf.name, Limits()), document_id="d", source="s",
                                     generation=1))
    texts = [c.text for c in chunks]
    for i in range(0, len(texts), 256):
        embedder.embed_documents(texts[i : i + 256])
    return time.perf_counter() - started, len(chunks)


def process_seconds(kb_url: str, pdf: Path, file_id: str, user: str | None = None) -> float:
    """kb's PUT /process for the PDF, as Open WebUI calls it (for ``user``, if given)."""
    headers = {**AUTH, "X-Filename": pdf.name, "X-File-Id": file_id,
               "Content-Type": "application/pdf"}
    if user is not None:
        headers["X-OpenWebUI-User-Id"] = user
    started = time.perf_counter()
    response = httpx.put(f"{kb_url}/process", content=pdf.read_bytes(), headers=headers,
                         timeout=3600)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed


def webui_upload_seconds(client: WebUIClient, pdf: Path) -> float:
    """Open WebUI's upload of the PDF until its processing (by kb) is complete."""
    started = time.perf_counter()
    response = client.upload(pdf.name, pdf.read_bytes(), "application/pdf")
    response.raise_for_status()
    record = client.file(response.json()["id"])
    elapsed = time.perf_counter() - started
    if record["data"].get("status") != "completed":
        raise RuntimeError(f"upload through Open WebUI failed: {record['data']}")
    return elapsed


def first_token_seconds(lines: Iterator[str], started: float) -> float:
    """Seconds until the first SSE chunk carrying answer text; reads the stream to its end.

    Reading on means no answer is still being generated while the next one is
    timed (a closed stream does not always stop the model at once).
    """
    first = None
    for line in lines:
        if first is not None or not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line[6:])
        choices = event.get("choices") or [{}]
        if choices[0].get("delta", {}).get("content"):
            first = time.perf_counter() - started
    if first is None:
        raise RuntimeError("the answer stream carried no text")
    return first


def ttft(
    http: httpx.Client, path: str, question: str, files: list[dict[str, str]] | None = None
) -> float:
    """Time to the first answer token for one streamed chat request (``files``: what the
    chat picked, as Open WebUI's UI sends it)."""
    body: dict[str, Any] = {
        "model": "kb", "stream": True, "messages": [{"role": "user", "content": question}]
    }
    if files is not None:
        body["files"] = files
    started = time.perf_counter()
    with http.stream("POST", path, json=body) as response:
        response.raise_for_status()
        return first_token_seconds(response.iter_lines(), started)


def search_seconds(http: httpx.Client, question: str) -> float:
    """kb's search latency for the question: the retrieval an answer starts with."""
    started = time.perf_counter()
    http.post("/v1/search", json={"query": question, "k": 5}).raise_for_status()
    return time.perf_counter() - started


def summary(values: list[float]) -> dict[str, float]:
    """Median and 90th percentile, in milliseconds."""
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 1), "p90_ms": round(p90 * 1000, 1)}


def knowledge_of(client: WebUIClient, filename: str) -> str:
    """A knowledge base holding the uploaded file ``filename``; its id."""
    files = client.http.get("/api/v1/files/", params={"content": "false"})
    files.raise_for_status()
    file_id = next(f["id"] for f in files.json()["items"] if f["filename"] == filename)
    created = client.http.post("/api/v1/knowledge/create",
                               json={"name": "Bench", "description": ""})
    created.raise_for_status()
    knowledge_id = str(created.json()["id"])
    client.http.post(f"/api/v1/knowledge/{knowledge_id}/file/add",
                     json={"file_id": file_id}).raise_for_status()
    return knowledge_id


def measure_answers(
    stack: Any, client: WebUIClient, questions: list[str], settle: float, uploaded: str
) -> dict[str, Any]:
    """TTFT through Open WebUI (nothing picked, and a knowledge base holding the file
    ``uploaded`` picked) and through kb, and kb's search latency, interleaved.

    ``settle`` seconds pass before each timed request: on a machine where vLLM
    shares the CPU, its engine keeps the cores busy for about a second after an
    answer, which would be charged to whatever is timed next.
    """
    timings: dict[str, list[float]] = {"webui": [], "webui_picked": [], "kb": [], "search": []}
    picked = [{"type": "collection", "id": knowledge_of(client, uploaded)}]
    with httpx.Client(base_url=stack.kb.url, headers=AUTH, timeout=600) as kb_http:
        for warm in questions[:3]:
            ttft(client.http, "/api/chat/completions", warm)
            ttft(client.http, "/api/chat/completions", warm, picked)
            ttft(kb_http, "/v1/chat/completions", warm)
        for question in questions[3:]:
            time.sleep(settle)
            timings["search"].append(search_seconds(kb_http, question))
            time.sleep(settle)
            timings["kb"].append(ttft(kb_http, "/v1/chat/completions", question))
            time.sleep(settle)
            timings["webui"].append(ttft(client.http, "/api/chat/completions", question))
            time.sleep(settle)
            timings["webui_picked"].append(
                ttft(client.http, "/api/chat/completions", question, picked)
            )
    result: dict[str, Any] = {name: summary(values) for name, values in timings.items()}
    result["ratio_picked_over_nothing_picked_p50"] = round(
        result["webui_picked"]["p50_ms"] / result["webui"]["p50_ms"], 2
    )
    result["ratio_webui_over_kb_p50"] = round(
        result["webui"]["p50_ms"] / result["kb"]["p50_ms"], 2
    )
    result["ratio_kb_over_search_p50"] = round(
        result["kb"]["p50_ms"] / result["search"]["p50_ms"], 2
    )
    return result


def main() -> None:
    """Run the measurements and print them as JSON."""
    args = parse_args()
    # Two PDFs of different abstracts: identical content would be copied, not embedded.
    pdf = make_pdf(common.OUT_DIR / f"scifact_{args.pages}p.pdf", args.corpus, args.pages)
    other = make_pdf(common.OUT_DIR / f"scifact_{args.pages}p_b.pdf", args.corpus, args.pages,
                     skip=args.pages * 2)
    raw, chunks = raw_ingest_seconds(pdf)
    raw_other, _ = raw_ingest_seconds(other)
    print(f"raw parse+chunk+embed: {raw:.1f} s / {raw_other:.1f} s for {chunks} chunks",
          file=sys.stderr)
    questions = common.read_queries()[: args.questions + 3]
    with ExitStack() as cleanup, tempfile.TemporaryDirectory(prefix="kb-webui-bench-") as work:
        settings: dict[str, str] = {}
        if args.tiny_chat:
            from tests.vllm_server import VllmServer

            chat = VllmServer.tiny_chat(Path(work))
            cleanup.callback(chat.stop)
            settings = {"llm_url": chat.url, "llm_model": "tiny-chat"}
        stack = start_stack(Path(work), **settings)
        cleanup.callback(stack.stop)
        client = WebUIClient(stack.webui.url)
        cleanup.callback(client.close)
        direct = process_seconds(stack.kb.url, other, "bench-direct")
        print(f"PUT /process: {direct:.1f} s", file=sys.stderr)
        through_ui = webui_upload_seconds(client, pdf)
        print(f"upload through Open WebUI: {through_ui:.1f} s", file=sys.stderr)
        # The same user attaches it again: their own copy's vectors may be reused.
        again = process_seconds(stack.kb.url, pdf, "bench-again", client.user["id"])
        print(f"the same PDF again, new file id: {again:.1f} s", file=sys.stderr)
        answers = measure_answers(
            stack, client, questions, 3.0 if args.tiny_chat else 0.2, pdf.name
        )
    result = {
        "pages": args.pages,
        "pdf_mb": round(pdf.stat().st_size / 2**20, 2),
        "chunks": chunks,
        "answerer": "tiny vLLM chat" if args.tiny_chat else "extractive",
        "ingest": {
            "raw_parse_chunk_embed_s": round(raw, 1),
            "webui_upload_s": round(through_ui, 1),
            "ratio_raw_over_webui_upload": round(raw / through_ui, 2),
            "raw_parse_chunk_embed_other_pdf_s": round(raw_other, 1),
            "process_other_pdf_s": round(direct, 1),
            "ratio_raw_over_process": round(raw_other / direct, 2),
            "identical_pdf_again_s": round(again, 2),
            "ratio_identical_again_over_raw": round(again / raw, 3),
        },
        "time_to_first_token": answers,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
