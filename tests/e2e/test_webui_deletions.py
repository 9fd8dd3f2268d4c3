"""Deletions in a real Open WebUI reach a real `kb serve`: by its webhook, and at kb's start.

kb runs with KB_WEBUI_URL and the admin's credentials, as the compose file sets them;
`kb webui` gives Open WebUI the webhook to kb (WEBHOOK_URL).
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_webui import kb_documents
from tests.openwebui import API_KEY, WebUIClient, sources

pytestmark = pytest.mark.integration

FOLLOW_SECONDS = 30  # the follower acts within a second or two; generous on a busy machine


@pytest.fixture(scope="module")
def stack(webui_stack: Stack) -> Stack:
    """kb (extractive) behind Open WebUI, following it (shared with the scope tests)."""
    return webui_stack


@pytest.fixture(scope="module")
def admin(webui_admin: WebUIClient) -> WebUIClient:
    """Open WebUI's API, signed in as its admin."""
    return webui_admin


def upload(admin: WebUIClient, stack: Stack, name: str, text: str) -> str:
    """Upload a text file through Open WebUI; its file id, once kb holds it."""
    response = admin.upload(name, text.encode(), "text/plain")
    assert response.status_code == 200, response.text
    assert name in kb_documents(stack)
    return str(response.json()["id"])


def wait_until_gone(stack: Stack, name: str) -> float:
    """Seconds until kb no longer holds ``name``; fails after FOLLOW_SECONDS."""
    started = time.monotonic()
    while name in kb_documents(stack):
        assert time.monotonic() - started < FOLLOW_SECONDS, f"{name} is still in kb"
        time.sleep(0.2)
    return time.monotonic() - started


def cited(admin: WebUIClient, question: str) -> list[str]:
    return [s["source"]["name"] for s in sources(admin.chat(question))]


def test_a_file_deleted_in_open_webui_is_no_longer_found(
    stack: Stack, admin: WebUIClient
) -> None:
    upload(admin, stack, "pelicans.txt", "Pelicans scoop fish with their throat pouches.")
    file_id = upload(admin, stack, "herons.txt", "Grey herons wait motionless in shallow water.")
    assert "herons.txt" in cited(admin, "How do grey herons hunt?")
    admin.http.delete(f"/api/v1/files/{file_id}").raise_for_status()
    wait_until_gone(stack, "herons.txt")
    assert "herons.txt" not in cited(admin, "How do grey herons hunt?")
    assert "pelicans.txt" in kb_documents(stack)


def test_a_file_removed_from_a_knowledge_base_is_no_longer_found(
    stack: Stack, admin: WebUIClient
) -> None:
    file_id = upload(admin, stack, "storks.txt", "White storks nest on church towers.")
    created = admin.http.post("/api/v1/knowledge/create", json={"name": "Birds", "description": ""})
    created.raise_for_status()
    knowledge = created.json()["id"]
    added = admin.http.post(f"/api/v1/knowledge/{knowledge}/file/add", json={"file_id": file_id})
    added.raise_for_status()
    # Removing a file from a knowledge base deletes it (unless Open WebUI retains files).
    removed = admin.http.post(
        f"/api/v1/knowledge/{knowledge}/file/remove", json={"file_id": file_id}
    )
    removed.raise_for_status()
    wait_until_gone(stack, "storks.txt")


def test_a_forged_event_changes_nothing_and_a_wrong_token_is_refused(
    stack: Stack, admin: WebUIClient
) -> None:
    kept = upload(admin, stack, "swifts.txt", "Common swifts sleep while flying.")
    deleted = upload(admin, stack, "wrens.txt", "Wrens sing loudly for their size.")
    events = f"{stack.kb.url}/v1/webui/events"

    def event(file_id: str) -> dict[str, object]:
        return {"event": "file.deleted", "subject": {"type": "file", "id": file_id}}

    assert httpx.post(events, params={"token": "guess"}, json=event(kept)).status_code == 401
    forged = httpx.post(events, params={"token": API_KEY}, json=event(kept))
    assert forged.status_code == 202 and forged.json() == {"followed": True}
    # Events are followed in order: once the real deletion is done, so is the forged one.
    admin.http.delete(f"/api/v1/files/{deleted}").raise_for_status()
    wait_until_gone(stack, "wrens.txt")
    assert "swifts.txt" in kb_documents(stack)


def test_deletions_while_kb_is_down_are_caught_up_at_its_start(
    stack: Stack, admin: WebUIClient
) -> None:
    ids = {
        name: upload(admin, stack, name, f"{name}: a note about {name.split('.')[0]} birds.")
        for name in ("owls.txt", "larks.txt", "robins.txt")
    }

    def delete_two() -> None:
        for name in ("owls.txt", "larks.txt"):
            admin.http.delete(f"/api/v1/files/{ids[name]}").raise_for_status()

    stack.restart_kb(between=delete_two)
    wait_until_gone(stack, "owls.txt")
    wait_until_gone(stack, "larks.txt")
    assert "robins.txt" in kb_documents(stack)
