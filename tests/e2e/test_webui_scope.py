"""Chats in a real Open WebUI search what the user picked and what Open WebUI shares.

kb installs its Filter function in Open WebUI at start (signed in as the admin);
chats go through Open WebUI's chat API with ``files`` as its UI sends them.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_webui import kb_documents
from tests.openwebui import API_KEY, WebUIClient, chat_with_files, sources
from tests.processes import KB

pytestmark = pytest.mark.integration

QUESTION = "What do we know about the lab freezer?"


@pytest.fixture(scope="module")
def filter_installed(webui_stack: Stack, webui_admin: WebUIClient) -> dict[str, Any]:
    """kb's filter as Open WebUI lists it, once kb has installed it."""
    deadline = time.monotonic() + 120
    while True:
        response = webui_admin.http.get("/api/v1/functions/id/kb_scope")
        if response.status_code == 200 and response.json().get("is_global"):
            return dict(response.json())
        assert time.monotonic() < deadline, f"kb did not install its filter: {response.text}"
        time.sleep(1)


def user(admin: WebUIClient, stack: Stack, name: str) -> WebUIClient:
    """A new ordinary user, signed in."""
    email = f"{name}-{stack.webui.port}@example.com"
    admin.add_user(name.title(), email, f"{name}-password-1")
    return WebUIClient(stack.webui.url, email, f"{name}-password-1")


def upload(client: WebUIClient, stack: Stack, name: str, text: str) -> str:
    """Upload a text file through Open WebUI; its file id, once kb holds it."""
    response = client.upload(name, text.encode(), "text/plain")
    assert response.status_code == 200, response.text
    assert name in kb_documents(stack)
    return str(response.json()["id"])


def knowledge(client: WebUIClient, name: str, file_ids: list[str]) -> str:
    """A knowledge base holding these files; its id."""
    created = client.http.post("/api/v1/knowledge/create", json={"name": name, "description": ""})
    created.raise_for_status()
    knowledge_id = str(created.json()["id"])
    for file_id in file_ids:
        added = client.http.post(
            f"/api/v1/knowledge/{knowledge_id}/file/add", json={"file_id": file_id}
        )
        added.raise_for_status()
    return knowledge_id


def cited(client: WebUIClient, files: list[dict[str, Any]], question: str = QUESTION) -> set[str]:
    return {s["source"]["name"] for s in sources(chat_with_files(client, question, files))}


def test_kb_installs_its_filter_active_and_global(filter_installed: dict[str, Any]) -> None:
    assert filter_installed["is_active"] and filter_installed["type"] == "filter"


def test_a_picked_knowledge_base_or_attached_file_is_all_a_chat_searches(
    webui_stack: Stack, webui_admin: WebUIClient, filter_installed: dict[str, Any]
) -> None:
    a = upload(webui_admin, webui_stack, "freezer-code.txt", "The lab freezer code is 2741.")
    b = upload(webui_admin, webui_stack, "freezer-temp.txt",
               "The lab freezer must stay at minus eighty degrees.")
    lab = knowledge(webui_admin, "Lab", [a])
    assert {"freezer-code.txt", "freezer-temp.txt"} <= cited(webui_admin, [])
    assert cited(webui_admin, [{"type": "collection", "id": lab}]) == {"freezer-code.txt"}
    assert cited(webui_admin, [{"type": "file", "id": b}]) == {"freezer-temp.txt"}
    both = [{"type": "collection", "id": lab}, {"type": "file", "id": b}]
    assert cited(webui_admin, both) == {"freezer-code.txt", "freezer-temp.txt"}


def test_naming_a_knowledge_base_or_file_one_cannot_read_gets_nothing_from_it(
    webui_stack: Stack, webui_admin: WebUIClient, filter_installed: dict[str, Any]
) -> None:
    bob, eve = user(webui_admin, webui_stack, "bob"), user(webui_admin, webui_stack, "eve")
    try:
        bobs = upload(bob, webui_stack, "bob-freezer.txt", "Bob hid the lab freezer key.")
        assert cited(bob, [{"type": "file", "id": bobs}]) == {"bob-freezer.txt"}
        admins = upload(webui_admin, webui_stack, "freezer-budget.txt",
                        "The lab freezer budget is 9,000 euros.")
        private = knowledge(webui_admin, "Budgets", [admins])
        crafted = [
            [{"type": "file", "id": bobs}],
            [{"type": "collection", "id": private}],
            [{"type": "file", "id": admins}],
        ]
        for picked in crafted:
            assert cited(eve, picked) == set()
        # A scope written into the request by hand is dropped by the filter.
        forged = {"claim": '{"user": "x"}', "sig": "0" * 64}
        body = {"model": "kb", "stream": True, "kb_scope": forged,
                "messages": [{"role": "user", "content": QUESTION}]}
        with eve.http.stream("POST", "/api/chat/completions", json=body) as response:
            text = "".join(response.iter_lines())
        assert "bob-freezer.txt" not in text and "freezer-budget.txt" not in text
    finally:
        bob.close()
        eve.close()


def test_a_knowledge_base_shared_with_a_group_is_found_by_its_members_only(
    webui_stack: Stack, webui_admin: WebUIClient, filter_installed: dict[str, Any]
) -> None:
    carol, dave = user(webui_admin, webui_stack, "carol"), user(webui_admin, webui_stack, "dave")
    try:
        file_id = upload(webui_admin, webui_stack, "freezer-rota.txt",
                         "Carol's team defrosts the lab freezer every March.")
        rota = knowledge(webui_admin, "Rota", [file_id])
        group = webui_admin.http.post(
            "/api/v1/groups/create", json={"name": "Lab team", "description": ""}
        )
        group.raise_for_status()
        group_id = group.json()["id"]
        webui_admin.http.post(
            f"/api/v1/groups/id/{group_id}/users/add", json={"user_ids": [carol.user["id"]]}
        ).raise_for_status()

        def share(grants: list[dict[str, str]]) -> None:
            webui_admin.http.post(
                f"/api/v1/knowledge/{rota}/access/update", json={"access_grants": grants}
            ).raise_for_status()

        assert "freezer-rota.txt" not in cited(carol, [])  # private to the admin so far
        share([{"principal_type": "group", "principal_id": group_id, "permission": "read"}])
        assert "freezer-rota.txt" in cited(carol, [])
        assert cited(carol, [{"type": "collection", "id": rota}]) == {"freezer-rota.txt"}
        assert "freezer-rota.txt" not in cited(dave, [])
        assert "freezer-rota.txt" not in cited(dave, [{"type": "collection", "id": rota}])
        share([])  # the grant is removed
        assert "freezer-rota.txt" not in cited(carol, [])
        assert "freezer-rota.txt" not in cited(carol, [{"type": "collection", "id": rota}])
        share([{"principal_type": "user", "principal_id": "*", "permission": "read"}])
        assert "freezer-rota.txt" in cited(dave, [])  # made public: everyone reads it
        webui_admin.http.delete(f"/api/v1/knowledge/{rota}/delete").raise_for_status()
        # The knowledge base is gone: its file stays the admin's own, shared with nobody.
        assert "freezer-rota.txt" not in cited(dave, []) | cited(carol, [])
        assert "freezer-rota.txt" in cited(webui_admin, [])
    finally:
        carol.close()
        dave.close()


def test_kb_webui_check_reports_and_repairs_the_wiring(
    webui_stack: Stack, webui_admin: WebUIClient, filter_installed: dict[str, Any]
) -> None:
    env = {**os.environ, "KB_DATA_DIR": str(webui_stack.kb_dir), "KB_API_KEY": API_KEY,
           **{f"KB_{k.upper()}": v for k, v in webui_stack.kb_settings.items()}}

    def check(*flags: str) -> subprocess.CompletedProcess[str]:
        command = [str(KB), "webui", "--check", *flags, "--kb-url", webui_stack.kb.url]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    healthy = check()
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "ok       filter kb_scope" in healthy.stdout and "ok       webhook" in healthy.stdout
    webui_admin.http.delete("/api/v1/functions/id/kb_scope/delete").raise_for_status()
    broken = check()
    assert broken.returncode == 1 and "missing  the filter kb_scope is not installed" in (
        broken.stdout
    )
    fixed = check("--fix")
    assert fixed.returncode == 0 and "fixed    filter: installed the filter" in fixed.stdout
    assert check().returncode == 0
