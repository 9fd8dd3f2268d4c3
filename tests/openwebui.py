"""A real Open WebUI (pip package, own cached venv) started by `kb webui`, and a client of its API.

``make test`` builds the venv and passes it in ``KB_TEST_WEBUI_VENV``; without
it the Open WebUI tests are skipped with the reason.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.processes import KB, KbServer, ServerProcess

ADMIN_EMAIL, ADMIN_PASSWORD = "admin@example.com", "admin-password-1"
API_KEY = "kb-test-key"


def webui_venv() -> Path:
    """Open WebUI's virtual environment, or skip the test with how to get one."""
    venv = os.environ.get("KB_TEST_WEBUI_VENV", "")
    if not venv or not (Path(venv) / "bin" / "open-webui").is_file():
        pytest.skip("no Open WebUI environment: run `make test` (it builds one in ~/.cache/kb)")
    return Path(venv)


class OpenWebUI(ServerProcess):
    """`kb webui` on a free port, wired to ``kb``, with an admin created from the environment."""

    def __init__(
        self, kb: KbServer, data_dir: Path, log_path: Path, port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "KB_WEBUI_VENV": str(webui_venv()),
            "KB_API_KEY": API_KEY,
            "WEBUI_ADMIN_EMAIL": ADMIN_EMAIL,
            "WEBUI_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "WEBUI_ADMIN_NAME": "Admin",
            "WEBUI_SECRET_KEY": "kb-test-secret",
        }
        command = [str(KB), "webui", "--port", str(self.port), "--kb-url", kb.url]
        command += ["--data-dir", str(data_dir)]
        super().__init__(command, log_path, f"{self.url}/health", env=env, startup_seconds=240)


class WebUIClient:
    """Open WebUI's own HTTP API, signed in as one user."""

    def __init__(self, url: str, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=600)
        signin = {"email": email, "password": password}
        response = self.http.post("/api/v1/auths/signin", json=signin)
        response.raise_for_status()
        self.user = response.json()
        self.http.headers["Authorization"] = f"Bearer {self.user['token']}"

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def add_user(self, name: str, email: str, password: str) -> None:
        """Create an ordinary user (the signed-in user must be an admin)."""
        body = {"name": name, "email": email, "password": password, "role": "user"}
        self.http.post("/api/v1/auths/add", json=body).raise_for_status()

    def upload(self, name: str, data: bytes, content_type: str) -> httpx.Response:
        """Upload a file as the UI does, processed before the call returns."""
        return self.http.post(
            "/api/v1/files/",
            params={"process": "true", "process_in_background": "false"},
            files={"file": (name, data, content_type)},
        )

    def file(self, file_id: str) -> dict[str, Any]:
        """A file's record, with its processing status."""
        response = self.http.get(f"/api/v1/files/{file_id}")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def chat(self, question: str, model: str = "kb") -> list[Any]:
        """Ask through Open WebUI's chat API, streamed; the decoded SSE data lines."""
        body = {"model": model, "stream": True,
                "messages": [{"role": "user", "content": question}]}
        with self.http.stream("POST", "/api/chat/completions", json=body) as response:
            response.raise_for_status()
            lines = [x[6:] for x in response.iter_lines() if x.startswith("data: ")]
        return [x if x == "[DONE]" else json.loads(x) for x in lines]


def answer_text(events: list[Any]) -> str:
    """The streamed answer's text."""
    return "".join(
        e["choices"][0]["delta"].get("content") or ""
        for e in events
        if isinstance(e, dict) and e.get("choices")
    )


def sources(events: list[Any]) -> list[dict[str, Any]]:
    """The ``source`` events' data, in order."""
    return [
        e["event"]["data"]
        for e in events
        if isinstance(e, dict) and e.get("event", {}).get("type") == "source"
    ]


def chat_with_files(client: WebUIClient, question: str, files: list[dict[str, Any]]) -> list[Any]:
    """Ask with files picked as the chat UI sends them: ``{"type": "collection", "id": …}``
    for a knowledge base picked with ``#``, ``{"type": "file", "id": …}`` for a file."""
    body = {"model": "kb", "stream": True, "files": files,
            "messages": [{"role": "user", "content": question}]}
    with client.http.stream("POST", "/api/chat/completions", json=body) as response:
        response.raise_for_status()
        lines = [x[6:] for x in response.iter_lines() if x.startswith("data: ")]
    return [x if x == "[DONE]" else json.loads(x) for x in lines]
