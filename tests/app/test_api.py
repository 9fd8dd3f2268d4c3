"""The HTTP API through its real interface (ASGI app with lifespan, real model and Chroma)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.app.helpers import upload, wait_job
from tests.filegen import make_docx, make_encrypted_pdf, pdf_bytes

MANUAL = ["Welcome to the handbook.", "Expense reports are due on the fifth working day."]
POLICY = [("h1", "Holidays"), ("p", "Every employee has twenty-eight days of paid leave.")]


def test_upload_search_list_delete(client: TestClient, tmp_path: Path) -> None:
    docx = make_docx(tmp_path / "policy.docx", POLICY).read_bytes()
    locked = make_encrypted_pdf(tmp_path / "locked.pdf").read_bytes()
    job = upload(
        client,
        [
            ("manual.pdf", pdf_bytes(MANUAL)),
            ("policy.docx", docx),
            ("notes.txt", b"The cafeteria opens at 8 am."),
            ("locked.pdf", locked),
        ],
    )
    assert job["status"] == "done" and job["done"] == job["total"] == 4
    status = {r["source"]: r for r in job["results"]}
    assert {s: r["status"] for s, r in status.items()} == {
        "manual.pdf": "added",
        "policy.docx": "added",
        "notes.txt": "added",
        "locked.pdf": "failed",
    }
    assert "encrypted" in status["locked.pdf"]["error"]

    found = client.post("/v1/search", json={"query": "when are expense reports due", "k": 2})
    assert found.status_code == 200
    best = found.json()["results"][0]
    assert set(best) >= {"document_id", "source", "page", "chunk_index", "text", "score"}
    assert (best["source"], best["page"]) == ("manual.pdf", 2)

    docs = {d["source"]: d for d in client.get("/v1/documents").json()["documents"]}
    assert docs["locked.pdf"]["status"] == "failed" and docs["manual.pdf"]["chunks"] >= 1
    doc_id = docs["manual.pdf"]["id"]
    assert client.get(f"/v1/documents/{doc_id}").json()["source"] == "manual.pdf"
    assert client.delete(f"/v1/documents/{doc_id}").status_code == 200
    assert client.get(f"/v1/documents/{doc_id}").status_code == 404
    assert client.delete(f"/v1/documents/{doc_id}").status_code == 404
    results = client.post("/v1/search", json={"query": "expense reports", "k": 10}).json()
    assert all(r["source"] != "manual.pdf" for r in results["results"])


def test_reupload_same_name_replaces(client: TestClient) -> None:
    upload(client, [("faq.txt", b"The office wifi password is on the fridge.")])
    job = upload(client, [("faq.txt", b"Parking is free for bicycles only.")])
    assert job["results"][0]["status"] == "updated"
    texts = [r["text"] for r in client.post("/v1/search", json={"query": "wifi"}).json()["results"]]
    assert texts == ["Parking is free for bicycles only."]


def test_oversized_upload_is_refused_while_streaming(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", max_file_mb=0.01)  # about 10 KB
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/documents", files=[("files", ("big.txt", b"x" * 50_000))])
        assert response.status_code == 413
        assert "over the upload limit" in response.json()["detail"]
        assert list((tmp_path / "data" / "uploads").iterdir()) == []


def test_bad_requests_get_clear_errors(client: TestClient) -> None:
    assert (
        client.post(
            "/v1/documents", content=b"raw", headers={"content-type": "text/plain"}
        ).status_code
        == 400
    )
    assert client.post("/v1/documents", files=[("other", ("a.txt", b"x"))]).status_code == 400
    assert client.post("/v1/search", json={"query": "", "k": 5}).status_code == 422
    assert client.post("/v1/search", json={"query": "x", "k": 0}).status_code == 422
    assert client.get("/v1/jobs/nope").status_code == 404


def test_api_key_is_required_when_set(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", api_key="s3cret")
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/search", json={"query": "x"}).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert client.get("/v1/documents", headers=wrong).status_code == 401
        right = {"Authorization": "Bearer s3cret"}
        assert client.get("/v1/documents", headers=right).status_code == 200
        assert client.post("/v1/search", json={"query": "x"}, headers=right).status_code == 200
        assert client.get("/healthz").status_code == 200


def test_health_ready_metrics_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["store"] == "ok"
    upload(client, [("a.txt", b"Alpha beta gamma.")])
    metrics = client.get("/metrics").text
    assert 'kb_documents{status="indexed"} 1.0' in metrics
    assert 'kb_http_requests_total{method="POST",route="/v1/documents",status="202"}' in metrics
    spec = client.get("/openapi.json").json()
    for path in (
        "/v1/search",
        "/v1/documents",
        "/v1/documents/{document_id}",
        "/v1/jobs/{job_id}",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in spec["paths"]
        for operation in spec["paths"][path].values():
            assert operation.get("description") or operation.get("summary")


def test_search_keeps_working_during_reindex(client: TestClient) -> None:
    upload(
        client,
        [
            (f"doc{i}.txt", f"Topic {i}: the river flows north past mill {i}.".encode())
            for i in range(30)
        ],
    )
    job = client.post("/v1/reindex").json()
    seen = []
    while client.get(f"/v1/jobs/{job['id']}").json()["status"] in ("queued", "running"):
        seen.append(
            len(client.post("/v1/search", json={"query": "river", "k": 3}).json()["results"])
        )
    final = wait_job(client, job["id"])
    assert final["status"] == "done" and final["done"] == 30
    assert all(n == 3 for n in seen)
    assert len(client.post("/v1/search", json={"query": "river", "k": 3}).json()["results"]) == 3


@pytest.mark.parametrize("kind", ["chroma", "milvus"])
def test_a_store_server_down_is_a_503_with_the_reason(tmp_path: Path, kind: str) -> None:
    from tests.conftest import start_chroma, start_milvus

    if kind == "chroma":
        process, url = start_chroma(tmp_path / "chroma")
        store: dict[str, str] = {"chroma_url": url}
        reason = f"Chroma server unreachable at {url}"
    else:  # milvus-lite served over gRPC: to kb, a Milvus server
        process, url = start_milvus(tmp_path / "milvus")
        store = {"store": "milvus", "milvus_uri": url}
        reason = f"Milvus unreachable at {url}"
    settings = Settings(data_dir=tmp_path / "data", **store)
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        process.terminate()
        process.wait(timeout=30)
        ready = client.get("/readyz")
        assert ready.status_code == 503 and reason.split()[0] in ready.json()["checks"]["store"]
        found = client.post("/v1/search", json={"query": "anything"})
        assert found.status_code == 503 and reason in found.json()["detail"]
