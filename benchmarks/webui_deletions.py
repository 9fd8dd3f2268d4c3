"""How soon a deletion in Open WebUI reaches kb, live and after kb was down.

Starts real `kb serve` (following Open WebUI: KB_WEBUI_URL and the admin) and real
Open WebUI (`kb webui`, from the venv that `make webui-env` builds), uploads SciFact
abstracts through Open WebUI's API, then measures:

- live: for each of ``--live`` files, the time from Open WebUI's answer to
  ``DELETE /api/v1/files/{id}`` until kb's ``/v1/search`` for the abstract's title no
  longer returns it (median of the files), against the delete call itself;
- catch-up: kb is stopped, ``--down`` files are deleted in Open WebUI, kb is started
  again; the time from kb answering ``/readyz`` until none of them is left, against
  kb's own start-up time (process start to ``/readyz``) in the same run.

    .venv/bin/python benchmarks/webui_deletions.py --live 10 --down 100
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402
from tests.e2e.conftest import Stack, start_stack  # noqa: E402
from tests.openwebui import API_KEY, WebUIClient  # noqa: E402

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--live", type=int, default=10, help="files deleted while kb runs")
    parser.add_argument("--down", type=int, default=100, help="files deleted while kb is down")
    parser.add_argument("--corpus", default=str(common.DEFAULT_CORPUS), help="corpus.jsonl")
    parser.add_argument("--out", help="also write the JSON result to this file")
    return parser.parse_args()


def upload(client: WebUIClient, name: str, text: str) -> str:
    """Upload one text file through Open WebUI (kb ingests it before the call returns)."""
    response = client.upload(name, text.encode(), "text/plain")
    response.raise_for_status()
    return str(response.json()["id"])


def found(kb: httpx.Client, user_id: str, query: str, name: str) -> bool:
    """Whether kb's search for ``query``, as that user, returns the file ``name``."""
    response = kb.post(
        "/v1/search", json={"query": query, "k": 10}, headers={"X-OpenWebUI-User-Id": user_id}
    )
    response.raise_for_status()
    return name in [hit["source"] for hit in response.json()["results"]]


def held(kb: httpx.Client) -> set[str]:
    """The file names kb holds."""
    response = kb.get("/v1/documents")
    response.raise_for_status()
    return {d["source"] for d in response.json()["documents"]}


def measure_live(stack: Stack, client: WebUIClient, records: list[dict[str, Any]]) -> dict:
    """Delete each file in Open WebUI; seconds until kb's search stops returning it."""
    gone, calls = [], []
    with httpx.Client(base_url=stack.kb.url, headers=AUTH, timeout=60) as kb:
        for n, record in enumerate(records):
            name, title = f"live-{n}.txt", record["title"]
            file_id = upload(client, name, common.abstract_text(record))
            if not found(kb, client.user["id"], title, name):
                raise RuntimeError(f"{name} is not found by its title before the deletion")
            started = time.perf_counter()
            client.http.delete(f"/api/v1/files/{file_id}").raise_for_status()
            answered = time.perf_counter()
            while found(kb, client.user["id"], title, name):
                if time.perf_counter() - answered > 60:
                    raise RuntimeError(f"{name} still found 60 s after its deletion")
                time.sleep(0.02)
            gone.append(time.perf_counter() - answered)
            calls.append(answered - started)
    return {
        "files": len(records),
        "delete_to_gone_median_ms": round(statistics.median(gone) * 1000, 1),
        "delete_to_gone_max_ms": round(max(gone) * 1000, 1),
        "delete_call_median_ms": round(statistics.median(calls) * 1000, 1),
        "ratio_gone_to_delete_call": round(statistics.median(gone) / statistics.median(calls), 2),
    }


def measure_catch_up(stack: Stack, client: WebUIClient, records: list[dict[str, Any]]) -> dict:
    """Stop kb, delete the files in Open WebUI, start kb; seconds until none is left."""
    names = {f"down-{n}.txt": upload(client, f"down-{n}.txt", common.abstract_text(r))
             for n, r in enumerate(records)}
    timings: dict[str, float] = {}

    def delete_all() -> None:
        for file_id in names.values():
            client.http.delete(f"/api/v1/files/{file_id}").raise_for_status()
        timings["start"] = time.perf_counter()

    stack.restart_kb(between=delete_all)
    ready = time.perf_counter()
    with httpx.Client(base_url=stack.kb.url, headers=AUTH, timeout=60) as kb:
        while names.keys() & held(kb):
            if time.perf_counter() - ready > 300:
                raise RuntimeError("deleted files still in kb 300 s after its start")
            time.sleep(0.05)
    caught_up = time.perf_counter() - ready
    startup = ready - timings["start"]
    return {
        "files": len(records),
        "kb_startup_s": round(startup, 2),
        "catch_up_after_ready_s": round(caught_up, 2),
        "ratio_catch_up_to_startup": round(caught_up / startup, 2),
    }


def main() -> None:
    """Run the measurements and print them as JSON."""
    args = parse_args()
    records = common.read_jsonl(args.corpus, args.live + args.down)
    with tempfile.TemporaryDirectory(prefix="kb-bench-deletions-") as tmp:
        stack = start_stack(Path(tmp))
        client = WebUIClient(stack.webui.url)
        try:
            result = {
                "live": measure_live(stack, client, records[: args.live]),
                "catch_up": measure_catch_up(stack, client, records[args.live :]),
            }
        finally:
            client.close()
            stack.stop()
    common.emit(result, args.out)


if __name__ == "__main__":
    main()
