"""Real `kb serve` and real Open WebUI (started by `kb webui`) for the end-to-end tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.openwebui import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    API_KEY,
    OpenWebUI,
    WebUIClient,
    webui_venv,
)
from tests.processes import KbServer
from tests.vllm_server import VllmServer


@dataclass
class Stack:
    """kb and the Open WebUI in front of it."""

    kb: KbServer
    webui: OpenWebUI
    kb_settings: dict[str, str]
    kb_dir: Path

    def restart_kb(self, between: Callable[[], None] = lambda: None) -> None:
        """Stop kb, run ``between`` while it is down, start it again (same data, same port)."""
        self.kb.stop()
        between()
        self.kb = KbServer(
            self.kb_dir, self.kb.log_path, api_key=API_KEY, port=str(self.kb.port),
            **self.kb_settings,
        )

    def stop(self) -> None:
        """Stop Open WebUI, then kb."""
        self.webui.stop()
        self.kb.stop()


def start_stack(folder: Path, **kb_settings: str) -> Stack:
    """Start kb with ``kb_settings`` (KB_* without the prefix), then Open WebUI wired to it.

    kb follows deletions in that Open WebUI (signed in as its admin) from the start: it
    waits for Open WebUI to answer, as in the compose file.
    """
    webui_venv()  # skip early, before starting anything, when Open WebUI is not installed
    webui_port = free_port()
    kb_settings = {
        "webui_url": f"http://127.0.0.1:{webui_port}", "webui_admin_email": ADMIN_EMAIL,
        "webui_admin_password": ADMIN_PASSWORD, **kb_settings,
    }
    kb = KbServer(folder / "kb", folder / "kb.log", api_key=API_KEY, **kb_settings)
    try:
        webui = OpenWebUI(kb, folder / "webui", folder / "webui.log", webui_port)
        return Stack(kb, webui, kb_settings, folder / "kb")
    except BaseException:
        kb.stop()
        raise


@pytest.fixture(scope="module")
def extractive_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """kb without an LLM (extractive answers) behind Open WebUI, storing in milvus-lite
    (the other stacks use embedded Chroma), so the same tests run on both stores."""
    stack = start_stack(tmp_path_factory.mktemp("extractive"), store="milvus")
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def vllm_stack(
    tmp_path_factory: pytest.TempPathFactory, tiny_chat: VllmServer
) -> Iterator[Stack]:
    """kb answering with the tiny vLLM chat model, behind Open WebUI."""
    folder = tmp_path_factory.mktemp("vllm")
    stack = start_stack(folder, llm_url=tiny_chat.url, llm_model="tiny-chat")
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def webui_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """kb (extractive) behind Open WebUI, following it: for the deletion and scope tests."""
    stack = start_stack(tmp_path_factory.mktemp("following"))
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def webui_admin(webui_stack: Stack) -> Iterator[WebUIClient]:
    """That Open WebUI's API, signed in as its admin."""
    client = WebUIClient(webui_stack.webui.url)
    yield client
    client.close()
