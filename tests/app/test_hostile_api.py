"""Defects found by an audit of the API, each with the test that failed before its fix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.filegen import png_bytes


@pytest.fixture
def small(tmp_path: Path) -> Iterator[TestClient]:
    """An app with small body limits."""
    settings = Settings(data_dir=tmp_path / "data", max_request_mb=0.01, max_upload_mb=0.05,
                        max_upload_files=3, max_file_mb=0.04)
    with TestClient(create_app(settings)) as c:
        yield c


def process(
    client: TestClient, text: str, name: str, user: str, file_id: str = ""
) -> httpx.Response:
    headers = {"X-Filename": name, "X-OpenWebUI-User-Id": user}
    if file_id:
        headers["X-File-Id"] = file_id
    return client.put("/process", content=text.encode(), headers=headers)


def documents(client: TestClient) -> list[dict[str, object]]:
    return list(client.get("/v1/documents").json()["documents"])


def test_a_file_id_is_scoped_to_its_owner(client: TestClient) -> None:
    """Another user sending the same file id gets their own document, not alice's."""
    assert process(client, "Alice's pears are green.", "a.txt", "alice", "f-1").status_code == 200
    taken = process(client, "Bob's pears are red.", "b.txt", "bob", "f-1")
    assert taken.json()["metadata"]["status"] == "added"
    owners = sorted((d["source"], d["owner"]) for d in documents(client))
    assert owners == [("a.txt", "alice"), ("b.txt", "bob")]
    hits = client.post("/v1/search", json={"query": "pears"},
                       headers={"X-OpenWebUI-User-Id": "alice"}).json()["results"]
    assert [h["source"] for h in hits] == ["a.txt"]


def test_upload_keys_are_unambiguous_with_colons(client: TestClient) -> None:
    """User "a:b" uploading "c.txt" and user "a" uploading "b:c.txt" are two documents."""
    assert process(client, "Plums ripen in August.", "c.txt", "a:b").status_code == 200
    assert process(client, "Figs ripen in September.", "b:c.txt", "a").status_code == 200
    assert sorted(d["owner"] for d in documents(client)) == ["a", "a:b"]


def test_a_failed_private_upload_keeps_its_owner(client: TestClient) -> None:
    response = client.put("/process", content=png_bytes(),
                          headers={"X-Filename": "scan.pdf", "X-OpenWebUI-User-Id": "bob"})
    assert response.status_code == 422 and "PNG image" in response.text
    [doc] = documents(client)
    assert (doc["status"], doc["owner"]) == ("failed", "bob")


def test_delete_of_a_refused_file_then_again_is_200_then_404(client: TestClient) -> None:
    client.put("/process", content=png_bytes(), headers={"X-Filename": "scan.pdf"})
    [doc] = documents(client)
    assert client.delete(f"/v1/documents/{doc['id']}").status_code == 200
    assert client.delete(f"/v1/documents/{doc['id']}").status_code == 404


def test_json_bodies_are_limited_on_every_route(small: TestClient) -> None:
    big = {"query": "x" * 20_000}
    for path in ("/v1/search", "/v1/answer"):
        response = small.post(path, json=big)
        assert response.status_code == 413 and "KB_MAX_REQUEST_MB" in response.text, path
    chat = {"messages": [{"role": "user", "content": "y" * 20_000}]}
    assert small.post("/v1/chat/completions", json=chat).status_code == 413

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield b'{"query": "'
        for _ in range(30):
            yield b"z" * 1000
        yield b'"}'

    response = small.post("/v1/search", content=chunked(),
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert small.post("/v1/search", json={"query": "fine"}).status_code == 200


def test_uploads_are_limited_in_count_and_in_total(small: TestClient, tmp_path: Path) -> None:
    many = [("files", (f"{i}.txt", b"tiny text")) for i in range(4)]
    response = small.post("/v1/documents", files=many)
    assert response.status_code == 413 and "KB_MAX_UPLOAD_FILES" in response.text
    # Each file is under the per-file limit (40 KB); together they are over 50 KB.
    heavy = [("files", (f"{i}.txt", b"w" * 30_000)) for i in range(3)]
    response = small.post("/v1/documents", files=heavy)
    assert response.status_code == 413 and "KB_MAX_UPLOAD_MB" in response.text
    assert list((tmp_path / "data" / "uploads").iterdir()) == []


def test_uploads_left_by_a_crash_are_removed_at_start(tmp_path: Path) -> None:
    leftover = tmp_path / "data" / "uploads" / "upload-abc"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"x" * 1000)
    with TestClient(create_app(Settings(data_dir=tmp_path / "data"))):
        assert not leftover.exists()
