"""A person in a real browser: sign in to Open WebUI, upload a PDF, ask, read kb's cited answer.

The system Chromium, driven by Playwright (which downloads no browser here),
uses the real Open WebUI in front of the real `kb serve` (the extractive stack
of conftest.py) through its pages only. A screenshot of the answer is kept in
``KB_TEST_ARTIFACTS`` (default: test-artifacts/ at the repository root), and
one of the page when the test fails.

The file is attached in the chat input, as people upload, and stays attached
while the question is asked: Open WebUI then sends the file's text along (in a
system message, as `kb webui` configures it), and kb must still search for the
question alone.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect, sync_playwright

from tests.e2e.conftest import Stack
from tests.filegen import pdf_bytes
from tests.openwebui import ADMIN_EMAIL, ADMIN_PASSWORD, API_KEY, WebUIClient

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FILE_NAME = "hotel-policy.pdf"
PAGES = [
    "Expenses. This policy covers expense claims for business trips.",
    "Hotels. The nightly hotel limit in Paris is 180 euros.",
]
QUESTION = "What is the nightly hotel limit in Paris?"
FACT = "nightly hotel limit in Paris is 180 euros"
SECONDS = 1000  # Playwright counts milliseconds
PAGE_TIMEOUT = 60 * SECONDS  # a 2-core machine runs Open WebUI, kb and Chromium at once
ANSWER_TIMEOUT = 120 * SECONDS


def chromium() -> Path:
    """The system Chromium, or skip the test with how to get one."""
    path = Path(os.environ.get("KB_TEST_CHROMIUM", "/usr/bin/chromium"))
    if not path.is_file():
        pytest.skip(f"no Chromium at {path}: run `make test` (its `browser` target installs it)")
    return path


def artifacts() -> Path:
    """Where screenshots go, created."""
    folder = Path(os.environ.get("KB_TEST_ARTIFACTS") or REPO / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sign_in(page: Page, url: str) -> None:
    """Sign in as the admin on the login page; returns once the chat input is there."""
    page.goto(f"{url}/auth")
    page.get_by_placeholder("Enter Your Email").fill(ADMIN_EMAIL)
    page.get_by_placeholder("Enter Your Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#chat-input")).to_be_visible(timeout=PAGE_TIMEOUT)


def upload(page: Page, path: Path) -> None:
    """Attach ``path`` in the chat input and wait until Open WebUI has processed it."""
    composer = page.locator("#message-input-container")
    # The input behind "Upload Files" (the other one is the camera's).
    page.locator("input[type=file]:not(#camera-input)").first.set_input_files(path)
    chip = composer.get_by_role("button", name=path.name)
    expect(chip).to_be_visible()
    # The chip shows a spinner until Open WebUI reports the file processed (by kb's /process).
    expect(chip.locator(".spinner_ajPY")).to_have_count(0, timeout=PAGE_TIMEOUT)


def kb_document(stack: Stack, name: str) -> dict[str, object]:
    """kb's catalog entry for ``name`` (asked through kb's API, not the UI)."""
    response = httpx.get(
        f"{stack.kb.url}/v1/documents", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    response.raise_for_status()
    documents = {d["source"]: d for d in response.json()["documents"]}
    assert name in documents, f"kb did not receive {name}: {sorted(documents)}"
    entry: dict[str, object] = documents[name]
    return entry


def ask(page: Page, question: str) -> Locator:
    """Type ``question`` in the chat input and send it; the assistant's message."""
    page.locator("#chat-input").click()
    page.keyboard.type(question)
    page.keyboard.press("Enter")
    expect(page.locator(".chat-user").last).to_contain_text(question, timeout=PAGE_TIMEOUT)
    return page.locator(".chat-assistant").last


@contextmanager
def browser_page(name: str) -> Iterator[Page]:
    """A page of the system Chromium; a screenshot ``<name>-failure.png`` if the test fails."""
    executable, folder = chromium(), artifacts()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable), headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(PAGE_TIMEOUT)
        # First sign-in of a user on a new version: a "What's New" modal covers the page.
        page.add_locator_handler(
            page.get_by_role("button", name="Okay, Let's Go!"), lambda button: button.click()
        )
        try:
            yield page
        except BaseException:
            page.screenshot(path=folder / f"{name}-failure.png", full_page=True)
            raise
        finally:
            browser.close()


def test_upload_ask_and_read_the_cited_answer_in_a_browser(
    extractive_stack: Stack, tmp_path: Path
) -> None:
    document = tmp_path / FILE_NAME
    document.write_bytes(pdf_bytes(PAGES))
    with browser_page("open-webui") as page:
        sign_in(page, extractive_stack.webui.url)
        upload(page, document)
        entry = kb_document(extractive_stack, FILE_NAME)
        assert entry["status"] == "indexed", entry

        answer = ask(page, QUESTION)
        # Extractive answers quote the best passages: "> sentence [1]".
        quote = answer.locator("blockquote", has_text=FACT)
        expect(quote).to_be_visible(timeout=ANSWER_TIMEOUT)
        # [1] is rendered as a button naming the cited file, not as text.
        expect(quote.get_by_role("button", name=f"View source: {FILE_NAME}")).to_be_visible()
        expect(quote).not_to_contain_text("[1]")
        # Under the answer, the list of sources, opened, names the file as source 1.
        sources = answer.get_by_role("button", name="Toggle 1 source")
        sources.click()
        expect(sources).to_have_attribute("aria-expanded", "true")
        expect(answer.get_by_role("button", name=f"View source: 1 {FILE_NAME}")).to_be_visible()
        page.screenshot(path=artifacts() / "open-webui-answer.png", full_page=True)

        # The citation opens the passage kb quoted, from that file.
        quote.get_by_role("button", name=f"View source: {FILE_NAME}").click()
        passage = page.get_by_role("dialog")
        expect(passage).to_contain_text(FILE_NAME)
        expect(passage).to_contain_text(FACT)
        expect(passage).to_contain_text(re.compile(r"\(page\s+2\)"))


def test_a_knowledge_base_picked_with_hash_is_what_the_answer_cites(
    extractive_stack: Stack,
) -> None:
    url = extractive_stack.webui.url
    admin = WebUIClient(url)
    try:
        picked = admin.upload("rome-hotels.txt", b"The nightly hotel limit in Rome is 150 euros.",
                              "text/plain").json()["id"]
        admin.upload("rome-history.txt", b"In 1990 the nightly hotel limit in Rome was 90 euros.",
                     "text/plain").raise_for_status()
        created = admin.http.post("/api/v1/knowledge/create",
                                  json={"name": "Travel", "description": "trips"})
        created.raise_for_status()
        admin.http.post(f"/api/v1/knowledge/{created.json()['id']}/file/add",
                        json={"file_id": picked}).raise_for_status()
        wait_for_filter(admin)
    finally:
        admin.close()
    with browser_page("open-webui-hash") as page:
        sign_in(page, url)
        page.locator("#chat-input").click()
        page.keyboard.type("#")
        page.get_by_role("button", name="Travel").click()  # the knowledge base, from the list
        answer = ask(page, "What is the nightly hotel limit in Rome?")
        cited = answer.get_by_role("button", name="View source: rome-hotels.txt")
        expect(cited.first).to_be_visible(timeout=ANSWER_TIMEOUT)
        expect(answer).to_contain_text("150 euros")
        expect(answer.get_by_role("button", name="View source: rome-history.txt")).to_have_count(0)
        page.screenshot(path=artifacts() / "open-webui-hash-answer.png", full_page=True)


def wait_for_filter(admin: WebUIClient, seconds: float = 120) -> None:
    """Until kb has installed its filter in Open WebUI (kb does so once Open WebUI answers)."""
    deadline = time.monotonic() + seconds
    while True:
        listed = admin.http.get("/api/v1/functions/")
        listed.raise_for_status()
        if any(f["id"] == "kb_scope" and f["is_active"] for f in listed.json()):
            return
        assert time.monotonic() < deadline, "kb did not install its filter in Open WebUI"
        time.sleep(1)
