"""The product as users meet it: a real Open WebUI in front of a real `kb serve`.

Files go in through Open WebUI's own upload API (which calls kb's /process),
questions through its chat API (which calls kb's /v1/chat/completions). Run
with the extractive answerer and with the tiny vLLM chat model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from retrieval.answer import NOT_FOUND
from tests.e2e.conftest import Stack
from tests.filegen import (
    make_docx,
    make_encrypted_pdf,
    make_photo,
    make_scan_pdf,
    make_scanned_pdf,
    pdf_bytes,
)
from tests.openwebui import API_KEY, WebUIClient, answer_text, sources

pytestmark = pytest.mark.integration

PDF_PAGES = [
    "Travel policy. This document describes business travel.",
    "Booking. Trains are booked through the travel desk.",
    "Allowances. The daily meal allowance abroad is 45 euros per day.",
]
DOCX_BLOCKS = [
    ("h1", "Security"),
    ("p", "Laptops must use full-disk encryption and lock after five minutes."),
]
TXT = "Parking: the underground garage opens at 6 am; visitor spaces are on level -1.\n"
SCAN_PAGES = [  # an image-only PDF, as a scanner makes it: read by OCR
    "Boiler room inspection. Facilities team, building services report.",
    "Findings. The inspectors found corroded valves on the third floor boiler.",
]
PHOTO = "食堂将于下周一起延长营业时间至晚上九点。"  # a photographed notice

QUESTIONS = [  # question, file that holds the answer, its page, words the answer quotes
    ("What is the daily meal allowance abroad?", "travel.pdf", 3, "45 euros"),
    ("How soon must laptops lock?", "security.docx", None, "five minutes"),
    ("When does the underground garage open?", "parking.txt", None, "6 am"),
    ("What did the inspectors find on the third floor boiler?", "inspection.pdf", 2,
     "corroded valves"),
]
MIME = {
    "pdf": "application/pdf",
    "txt": "text/plain",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "jpg": "image/jpeg",
}


@pytest.fixture(scope="module", params=["extractive_stack", "vllm_stack"])
def stack(request: pytest.FixtureRequest) -> Stack:
    """Each test runs once with the extractive answerer and once with vLLM."""
    result: Stack = request.getfixturevalue(request.param)
    return result


@pytest.fixture(scope="module")
def admin(stack: Stack) -> Iterator[WebUIClient]:
    """Open WebUI's API, signed in as the admin created from the environment."""
    client = WebUIClient(stack.webui.url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def uploaded(admin: WebUIClient, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The documents (two of them scans), uploaded through Open WebUI: file name → Open
    WebUI file record."""
    folder = tmp_path_factory.mktemp("docs")
    files = {
        "travel.pdf": pdf_bytes(PDF_PAGES),
        "security.docx": make_docx(folder / "security.docx", DOCX_BLOCKS).read_bytes(),
        "parking.txt": TXT.encode(),
        "inspection.pdf": make_scan_pdf(folder / "inspection.pdf", SCAN_PAGES).read_bytes(),
        "canteen.jpg": make_photo(folder / "canteen.jpg", PHOTO).read_bytes(),
    }
    records = {}
    for name, data in files.items():
        response = admin.upload(name, data, MIME[name.rsplit(".", 1)[1]])
        assert response.status_code == 200, response.text
        records[name] = admin.file(response.json()["id"])
    return records


def kb_catalog(stack: Stack) -> list[dict[str, Any]]:
    """kb's own catalog: every document."""
    response = httpx.get(
        f"{stack.kb.url}/v1/documents", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    response.raise_for_status()
    documents: list[dict[str, Any]] = response.json()["documents"]
    return documents


def kb_documents(stack: Stack) -> dict[str, dict[str, Any]]:
    """kb's own catalog, by file name."""
    return {d["source"]: d for d in kb_catalog(stack)}


def test_uploads_through_open_webui_are_ingested_by_kb(
    stack: Stack, admin: WebUIClient, uploaded: dict[str, Any]
) -> None:
    for name, record in uploaded.items():
        assert record["data"]["status"] == "completed", (name, record["data"])
    assert "45 euros" in uploaded["travel.pdf"]["data"]["content"]  # kb's text, kept by the UI
    docs = kb_documents(stack)
    assert set(docs) == set(uploaded)
    for doc in docs.values():
        assert doc["status"] == "indexed" and doc["chunks"] >= 1
        assert doc["owner"] == admin.user["id"]  # private to the uploader
    assert (docs["inspection.pdf"]["pages"], docs["inspection.pdf"]["ocr_pages"]) == (2, 2)
    assert docs["canteen.jpg"]["ocr_pages"] == 1 and docs["travel.pdf"]["ocr_pages"] == 0
    assert "延长营业时间" in uploaded["canteen.jpg"]["data"]["content"]


@pytest.mark.parametrize(("question", "name", "page", "quote"), QUESTIONS)
def test_answer_streams_a_source_event_for_the_right_file_and_page(
    stack: Stack, admin: WebUIClient, uploaded: dict[str, Any],
    question: str, name: str, page: int | None, quote: str,
) -> None:
    events = admin.chat(question)
    assert events[-1] == "[DONE]"
    first = sources(events)[0]
    assert first["source"]["name"] == name
    # Open WebUI counts pages from 0 and shows page + 1: kb sends it that way.
    assert first["metadata"][0]["page"] == (page - 1 if page else None)
    answer = answer_text(events)
    if stack.kb_settings.get("llm_url"):  # the tiny model's words are random: check the stream
        assert answer.strip() and answer != NOT_FOUND
    else:
        assert quote in answer and "[1]" in answer


def test_a_question_the_documents_cannot_answer_is_refused(
    admin: WebUIClient, uploaded: dict[str, Any]
) -> None:
    events = admin.chat("Who won the football world cup in 1954?")
    assert answer_text(events).strip() == NOT_FOUND
    assert sources(events) == []


def test_broken_files_fail_in_open_webui_with_kbs_reason(
    stack: Stack, admin: WebUIClient, tmp_path: Path
) -> None:
    broken = {
        "locked.pdf": (make_encrypted_pdf(tmp_path / "l.pdf").read_bytes(), "encrypted PDF"),
        "blank.pdf": (make_scanned_pdf(tmp_path / "s.pdf").read_bytes(), "no extractable text"),
        "fake.docx": (b"this is not a word file", "named .docx but its content is plain text"),
    }
    for name, (data, reason) in broken.items():
        response = admin.upload(name, data, MIME[name.rsplit(".", 1)[1]])
        record = admin.file(response.json()["id"]) if response.status_code == 200 else {}
        status = record.get("data", {})
        assert status.get("status") == "failed", (name, response.text, status)
        assert reason in status["error"], (name, status["error"])
        assert kb_documents(stack)[name]["status"] == "failed"


def test_one_users_upload_never_reaches_another_users_answer(
    stack: Stack, admin: WebUIClient, uploaded: dict[str, Any]
) -> None:
    email = f"bob-{stack.webui.port}@example.com"
    admin.add_user("Bob", email, "bob-password-1")
    bob = WebUIClient(stack.webui.url, email, "bob-password-1")
    try:
        for question, name, _, quote in QUESTIONS:
            events = bob.chat(question)
            assert name not in [s["source"]["name"] for s in sources(events)]
            assert quote not in answer_text(events)
        response = bob.upload("bob.txt", b"Bob's locker code is 4711.", "text/plain")
        assert bob.file(response.json()["id"])["data"]["status"] == "completed"
        assert sources(bob.chat("What is Bob's locker code?"))[0]["source"]["name"] == "bob.txt"
    finally:
        bob.close()
    events = admin.chat("What is Bob's locker code?")
    assert "bob.txt" not in [s["source"]["name"] for s in sources(events)]


def test_adding_a_file_to_a_knowledge_base_keeps_one_document_in_kb(
    stack: Stack, admin: WebUIClient, uploaded: dict[str, Any]
) -> None:
    created = admin.http.post(
        "/api/v1/knowledge/create", json={"name": "Policies", "description": "Company policies"}
    )
    created.raise_for_status()
    file_id = uploaded["travel.pdf"]["id"]
    added = admin.http.post(
        f"/api/v1/knowledge/{created.json()['id']}/file/add", json={"file_id": file_id}
    )
    assert added.status_code == 200, added.text
    # The same file attached again is a new Open WebUI file: answers still cite it once.
    assert admin.upload("travel.pdf", pdf_bytes(PDF_PAGES), MIME["pdf"]).status_code == 200
    assert [d["source"] for d in kb_catalog(stack)].count("travel.pdf") == 2
    events = admin.chat(QUESTIONS[0][0])
    assert [s["source"]["name"] for s in sources(events)].count("travel.pdf") == 1


def test_title_generation_reaches_kb_as_a_task_and_skips_retrieval(
    stack: Stack, admin: WebUIClient, uploaded: dict[str, Any]
) -> None:
    admin.http.get("/api/models").raise_for_status()  # Open WebUI loads its model list
    conversation = [
        {"role": "user", "content": QUESTIONS[0][0]},
        {"role": "assistant", "content": "The allowance is 45 euros [1]."},
    ]
    response = admin.http.post(
        "/api/v1/tasks/title/completions",
        json={"model": "kb", "messages": conversation, "chat_id": "local"},
    )
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["sources"] == []  # the {{TASK}} header told kb: no retrieval
    if not stack.kb_settings.get("llm_url"):
        assert reply["choices"][0]["message"]["content"] == "{}"  # Open WebUI keeps its default
