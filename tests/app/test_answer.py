"""POST /v1/answer without an LLM: extractive answers with citations, honest refusals."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from tests.app.helpers import upload
from tests.filegen import pdf_bytes


def test_extractive_answer_cites_file_and_page(client: TestClient) -> None:
    pages = ["Company overview.", "Expense reports are due on the fifth working day."]
    upload(client, [("handbook.pdf", pdf_bytes(pages)), ("menu.txt", b"Soup on Mondays.")])
    reply = client.post("/v1/answer", json={"query": "When are expense reports due?"}).json()
    first = reply["citations"][0]
    assert (first["n"], first["source"], first["page"]) == (1, "handbook.pdf", 2)
    assert "fifth working day" in reply["answer"] and "[1]" in reply["answer"]


def test_question_nothing_answers_gets_not_found(client: TestClient) -> None:
    upload(client, [("menu.txt", b"Soup is served on Mondays in the canteen.")])
    reply = client.post("/v1/answer", json={"query": "quantum chromodynamics lattice QCD"}).json()
    assert reply == {"answer": "Not found in the knowledge base.", "citations": []}


def test_streamed_answer_ends_with_citations(client: TestClient) -> None:
    upload(client, [("menu.txt", b"Soup is served on Mondays in the canteen.")])
    body = {"query": "which day is soup served", "stream": True}
    with client.stream("POST", "/v1/answer", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    events = [json.loads(line) for line in lines[:-1]]
    assert "Mondays" in "".join(e.get("delta", "") for e in events)
    assert events[-1]["citations"][0]["source"] == "menu.txt"


def test_answer_needs_the_key_too(tmp_path: Path) -> None:
    from app.main import create_app
    from app.settings import Settings

    with TestClient(create_app(Settings(data_dir=tmp_path / "d", api_key="k"))) as c:
        assert c.post("/v1/answer", json={"query": "x"}).status_code == 401
