"""Following deletions in Open WebUI: events are checked, reconciling catches what was missed.

Open WebUI itself is faked here by ``Files`` (our own ``Checker`` protocol); the end-to-end
tests run the same follower against a real Open WebUI.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.service import WEBUI_SCHEME, KnowledgeBase
from app.settings import Settings
from app.webui_client import WebUIUnavailable
from app.webui_sync import UNKNOWN_INSTANCE_FILES, DeletionFollower
from tests.conftest import MakeKb, write


class Files:
    """Open WebUI's files as the follower sees them; ``down`` answers nothing."""

    def __init__(self, ids: set[str], users: frozenset[str] = frozenset({"u1"})) -> None:
        self.ids, self.users, self.down, self.asked = set(ids), users, threading.Event(), 0

    def user_exists(self, user_id: str) -> bool:
        self._answer()
        return user_id in self.users

    def exists(self, file_id: str) -> bool:
        self._answer()
        return file_id in self.ids

    def file_ids(self) -> set[str]:
        self._answer()
        return set(self.ids)

    def close(self) -> None:
        pass

    def _answer(self) -> None:
        self.asked += 1
        if self.down.is_set():
            raise WebUIUnavailable("Open WebUI at test does not answer")


def upload(kb: KnowledgeBase, tmp: Path, file_id: str, text: str, owner: str = "u1") -> None:
    path = write(tmp / f"{file_id}.txt", text)
    [outcome] = kb.ingest([kb.upload_source(WEBUI_SCHEME, file_id, path.name, path, owner)])
    assert outcome.status == "added", outcome.error


def found(kb: KnowledgeBase, query: str) -> set[str]:
    return {h.source for h in kb.search(query, 10, viewer="u1")}


@pytest.fixture
def kb(make_kb: MakeKb, tmp_path: Path) -> KnowledgeBase:
    kb = make_kb()
    upload(kb, tmp_path, "file-a", "Aardvarks dig burrows in the savanna at night.")
    upload(kb, tmp_path, "file-b", "Beavers build dams of branches across rivers.")
    path = write(tmp_path / "local.txt", "Aardvarks are also described in a local note.")
    kb.ingest([kb.upload_source("upload", "local.txt", "local.txt", path, None)])
    return kb


def test_an_event_removes_a_file_only_once_open_webui_says_it_is_gone(kb: KnowledgeBase) -> None:
    webui = Files({"file-b"})  # file-a was deleted there
    follower = DeletionFollower(kb, webui, every_seconds=3600)
    removed = follower.follow({"file-a", "file-b", "never-uploaded"})
    assert [d.source for d in removed] == ["file-a.txt"]
    assert "file-a.txt" not in found(kb, "aardvark burrows")
    assert "file-b.txt" in found(kb, "beaver dams")
    assert set(kb.webui_files()) == {"file-b"}


def test_a_forged_event_for_a_file_that_still_exists_changes_nothing(kb: KnowledgeBase) -> None:
    follower = DeletionFollower(kb, Files({"file-a", "file-b"}), every_seconds=3600)
    assert follower.follow({"file-a"}) == []
    assert "file-a.txt" in found(kb, "aardvark burrows")


def test_reconciling_removes_every_file_open_webui_no_longer_lists(kb: KnowledgeBase) -> None:
    follower = DeletionFollower(kb, Files({"file-b", "someone-elses"}), every_seconds=3600)
    assert [d.source for d in follower.reconcile()] == ["file-a.txt"]
    assert follower.reconciled.is_set()
    assert set(kb.webui_files()) == {"file-b"}
    assert "local.txt" in found(kb, "aardvark")  # not from Open WebUI: never touched


def test_an_instance_that_knows_none_of_kbs_files_nor_their_uploaders_removes_nothing(
    make_kb: MakeKb, tmp_path: Path
) -> None:
    kb = make_kb()
    for n in range(UNKNOWN_INSTANCE_FILES):
        upload(kb, tmp_path, f"f{n}", f"Document number {n} about topic {n}.")
    other_instance = DeletionFollower(kb, Files(set(), users=frozenset()), every_seconds=3600)
    with pytest.raises(WebUIUnavailable, match="knows none of the 20 files"):
        other_instance.reconcile()
    assert len(kb.webui_files()) == UNKNOWN_INSTANCE_FILES
    # The right instance, where every one of those files was deleted: all go.
    right = DeletionFollower(kb, Files(set()), every_seconds=3600)
    assert len(right.reconcile()) == UNKNOWN_INSTANCE_FILES
    assert kb.webui_files() == {}


def test_events_are_taken_by_name_and_the_follower_waits_for_open_webui(
    kb: KnowledgeBase,
) -> None:
    webui = Files({"file-b"})
    webui.down.set()
    follower = DeletionFollower(kb, webui, every_seconds=3600, retry_seconds=lambda n: 0.05)
    follower.start()
    try:
        assert follower.notify({"event": "file.deleted", "subject": {"type": "file", "id": "x"}})
        assert follower.notify({"event": "knowledge.reset", "subject": {"id": "k"}})
        assert not follower.notify({"event": "chat.finished", "subject": {"id": "c"}})
        assert not follower.notify({"event": "file.deleted", "subject": "not an object"})
        threading.Event().wait(0.3)
        assert not follower.reconciled.is_set() and webui.asked >= 2  # retrying
        webui.down.clear()
        assert follower.reconciled.wait(10)
    finally:
        follower.close()
    assert set(kb.webui_files()) == {"file-b"}


def test_the_webhook_needs_the_key_and_a_configured_follower(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", api_key="secret-key")
    event = {"event": "file.deleted", "subject": {"type": "file", "id": "x"}}
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/webui/events", json=event).status_code == 401
        wrong = client.post("/v1/webui/events", params={"token": "guess"}, json=event)
        assert wrong.status_code == 401
        unset = client.post("/v1/webui/events", params={"token": "secret-key"}, json=event)
        assert unset.status_code == 503 and "KB_WEBUI_URL" in unset.json()["detail"]
