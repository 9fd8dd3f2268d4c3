"""The Open WebUI-facing API: OpenAI-compatible chat with source events, and PUT /process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.app.helpers import upload
from tests.filegen import make_encrypted_pdf, pdf_bytes

HANDBOOK = ["Company overview.", "Expense reports are due on the fifth working day."]
QUESTION = [{"role": "user", "content": "When are expense reports due?"}]


def stream_events(client: TestClient, body: dict[str, Any], **headers: str) -> list[Any]:
    """POST a streaming chat and return the decoded SSE data lines ([DONE] as a string)."""
    with client.stream(
        "POST", "/v1/chat/completions", json={**body, "stream": True}, headers=headers
    ) as response:
        assert response.status_code == 200
        lines = [x[6:] for x in response.iter_lines() if x.startswith("data: ")]
    return [x if x == "[DONE]" else json.loads(x) for x in lines]


def text_of(events: list[Any]) -> str:
    """The streamed answer text."""
    return "".join(
        e["choices"][0]["delta"].get("content", "")
        for e in events
        if isinstance(e, dict) and "choices" in e
    )


def test_models_lists_kb(client: TestClient) -> None:
    assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["kb"]


def test_streamed_chat_sends_sources_first_and_matching_markers(client: TestClient) -> None:
    upload(client, [("handbook.pdf", pdf_bytes(HANDBOOK)), ("menu.txt", b"Soup on Mondays.")])
    events = stream_events(client, {"model": "kb", "messages": QUESTION, "tools": [{"x": 1}]})
    assert events[-1] == "[DONE]"
    first = events[0]["event"]
    assert first["type"] == "source" and "type" not in first["data"]
    assert first["data"]["source"]["name"] == "handbook.pdf"
    assert first["data"]["metadata"][0] == {
        "source": "handbook.pdf",
        "name": "handbook.pdf",
        "page": 1,  # Open WebUI counts from 0 and shows "page 2"
    }
    answer = text_of(events)
    assert "fifth working day" in answer and "[1]" in answer


def test_open_webui_file_context_is_not_part_of_the_search(client: TestClient) -> None:
    upload(client, [("handbook.pdf", pdf_bytes(HANDBOOK)), ("menu.txt", b"Soup on Mondays.")])
    attached = (
        "### Task:\nRespond to the user query using the provided context.\n<context>\n"
        + "Soup on Mondays. " * 200
        + "\n</context>\n\nWhen are expense reports due?"
    )
    events = stream_events(client, {"messages": [{"role": "user", "content": attached}]})
    assert events[0]["event"]["data"]["source"]["name"] == "handbook.pdf"
    assert "fifth working day" in text_of(events)


def test_plain_chat_and_honest_refusal(client: TestClient) -> None:
    upload(client, [("handbook.pdf", pdf_bytes(HANDBOOK))])
    reply = client.post("/v1/chat/completions", json={"messages": QUESTION}).json()
    assert "fifth working day" in reply["choices"][0]["message"]["content"]
    assert reply["sources"][0]["source"]["name"] == "handbook.pdf"
    nowhere = [{"role": "user", "content": "quantum chromodynamics on the lattice"}]
    events = stream_events(client, {"messages": nowhere})
    assert text_of(events) == "Not found in the knowledge base."
    assert not any("event" in e for e in events if isinstance(e, dict))


def test_follow_up_question_uses_the_earlier_turn(client: TestClient) -> None:
    upload(client, [("handbook.pdf", pdf_bytes(HANDBOOK)), ("menu.txt", b"Soup on Mondays.")])
    turns = [
        *QUESTION,
        {"role": "assistant", "content": "On the fifth working day [1]."},
        {"role": "user", "content": "which page?"},
    ]
    events = stream_events(client, {"messages": turns})
    assert events[0]["event"]["data"]["source"]["name"] == "handbook.pdf"


def test_background_tasks_skip_retrieval(client: TestClient) -> None:
    upload(client, [("handbook.pdf", pdf_bytes(HANDBOOK))])
    events = stream_events(client, {"messages": QUESTION}, **{"X-Kb-Task": "title_generation"})
    assert not any("event" in e for e in events if isinstance(e, dict))
    assert text_of(events) == "{}"  # no LLM: Open WebUI keeps its default title


def test_process_ingests_returns_text_and_replaces_by_file_id(client: TestClient) -> None:
    headers = {
        "X-Filename": "f-1_hand%20book.pdf",
        "X-File-Id": "f-1",
        "X-OpenWebUI-User-Id": "u-7",
        "Content-Type": "application/pdf",
    }
    first = client.put("/process", content=pdf_bytes(HANDBOOK), headers=headers)
    assert first.status_code == 200, first.text
    body = first.json()
    assert "fifth working day" in body["page_content"]
    assert body["metadata"]["source"] == "hand book.pdf" and body["metadata"]["status"] == "added"
    again = client.put(
        "/process", content=pdf_bytes(["Expenses are now due weekly."]), headers=headers
    )
    assert again.json()["metadata"]["status"] == "updated"
    docs = client.get("/v1/documents").json()["documents"]
    assert [d["source"] for d in docs] == ["hand book.pdf"]


def test_process_refuses_bad_files_with_the_reason(client: TestClient, tmp_path: Path) -> None:
    locked = make_encrypted_pdf(tmp_path / "locked.pdf").read_bytes()
    response = client.put("/process", content=locked, headers={"X-Filename": "locked.pdf"})
    assert response.status_code == 422 and response.text.startswith("locked.pdf: encrypted PDF")
    fake = client.put("/process", content=b"hello", headers={"X-Filename": "photo.png"})
    assert fake.status_code == 422 and "unsupported type" in fake.text
    assert list((tmp_path / "data" / "uploads").glob("process-*")) == []


def test_process_needs_the_key_and_respects_the_size_limit(tmp_path: Path) -> None:
    from app.main import create_app
    from app.settings import Settings

    settings = Settings(data_dir=tmp_path / "d", api_key="k", max_file_mb=0.01)
    with TestClient(create_app(settings)) as c:
        assert c.put("/process", content=b"x", headers={"X-Filename": "a.txt"}).status_code == 401
        auth = {"Authorization": "Bearer k", "X-Filename": "a.txt"}
        too_big = c.put("/process", content=b"x" * 50_000, headers=auth)
        assert too_big.status_code == 413 and "over the limit" in too_big.text
        assert c.put("/process", content=b"small text", headers=auth).status_code == 200


def test_one_users_private_upload_never_reaches_another_users_answer(client: TestClient) -> None:
    salary = pdf_bytes(["Dana Smith's salary is 91,000 euros a year."])
    headers = {"X-Filename": "salary.pdf", "X-File-Id": "f-9", "X-OpenWebUI-User-Id": "alice"}
    assert client.put("/process", content=salary, headers=headers).status_code == 200
    upload(client, [("handbook.pdf", pdf_bytes(HANDBOOK))])  # operator upload: shared
    question = {"messages": [{"role": "user", "content": "What is Dana Smith's salary?"}]}
    for user in ("bob", None):
        extra = {"X-OpenWebUI-User-Id": user} if user else {}
        events = stream_events(client, question, **extra)
        names = [e["event"]["data"]["source"]["name"] for e in events if "event" in e]
        assert "salary.pdf" not in names and "91,000" not in text_of(events)
    alice = stream_events(client, question, **{"X-OpenWebUI-User-Id": "alice"})
    assert "91,000" in text_of(alice)
    assert alice[0]["event"]["data"]["source"]["name"] == "salary.pdf"
    expense = {"messages": QUESTION}
    bob = stream_events(client, expense, **{"X-OpenWebUI-User-Id": "bob"})
    assert "fifth working day" in text_of(bob)  # shared documents answer everyone
    owners = {d["source"]: d["owner"] for d in client.get("/v1/documents").json()["documents"]}
    assert owners == {"salary.pdf": "alice", "handbook.pdf": None}


def test_admin_uploads_are_shared_when_configured(tmp_path: Path) -> None:
    from app.main import create_app
    from app.settings import Settings

    settings = Settings(data_dir=tmp_path / "d", share_admin_uploads=True)
    admin = {"X-Filename": "a.txt", "X-OpenWebUI-User-Id": "u1", "X-OpenWebUI-User-Role": "admin"}
    user = {**admin, "X-Filename": "b.txt", "X-OpenWebUI-User-Role": "user"}
    with TestClient(create_app(settings)) as c:
        assert c.put("/process", content=b"Shared policy text.", headers=admin).status_code == 200
        assert c.put("/process", content=b"Private notes text.", headers=user).status_code == 200
        owners = {d["source"]: d["owner"] for d in c.get("/v1/documents").json()["documents"]}
    assert owners == {"a.txt": None, "b.txt": "u1"}


def test_malformed_message_parts_are_a_422_not_a_crash(client: TestClient) -> None:
    for part in ({"type": "text", "text": 123}, {"type": "text", "text": None}, {"text": "x"}):
        body = {"messages": [{"role": "user", "content": [part]}]}
        assert client.post("/v1/chat/completions", json=body).status_code == 422, part
    fine = [{"type": "text", "text": "soup"}, {"type": "image_url", "image_url": {"url": "x"}}]
    reply = client.post("/v1/chat/completions",
                        json={"messages": [{"role": "user", "content": fine}]})
    assert reply.status_code == 200
