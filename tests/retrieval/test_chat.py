"""The chat client and LLM answers against a real vLLM serving a tiny random-weight model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from retrieval.chat import OpenAIChatModel
from retrieval.errors import ConfigurationError, UpstreamUnavailable
from tests.app.helpers import upload
from tests.conftest import free_port
from tests.vllm_server import VllmServer

pytestmark = pytest.mark.integration
HELLO = [{"role": "user", "content": "Say something."}]


@pytest.fixture
def chat(tiny_chat: VllmServer) -> VllmServer:
    """vLLM serving the tiny chat model, shared with the Open WebUI tests."""
    return tiny_chat


def test_streaming_reaches_the_caller(chat: VllmServer) -> None:
    model = OpenAIChatModel(chat.url, "tiny-chat")
    assert model.context_tokens == 2048
    pieces = list(model.stream(HELLO, max_tokens=16))
    assert len(pieces) >= 2 and all(isinstance(p, str) for p in pieces)


def test_answer_over_the_api_streams_text_and_citations(chat: VllmServer, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", llm_url=chat.url, llm_model="tiny-chat")
    with TestClient(create_app(settings)) as client:
        upload(client, [("menu.txt", b"Soup is served on Mondays in the canteen.")])
        body = {"query": "which day is soup served", "stream": True}
        with client.stream("POST", "/v1/answer", json=body) as response:
            lines = [x[6:] for x in response.iter_lines() if x.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    events = [json.loads(x) for x in lines[:-1]]
    deltas = [e["delta"] for e in events if "delta" in e]
    assert len(deltas) >= 2 and "Soup is served" not in "".join(deltas)  # the model wrote it
    assert events[-1]["citations"][0]["source"] == "menu.txt"


def test_errors_propagate_with_reasons(chat: VllmServer) -> None:
    with pytest.raises(ConfigurationError, match="does not serve 'nope'"):
        OpenAIChatModel(chat.url, "nope")
    model = OpenAIChatModel(chat.url, "tiny-chat")
    with pytest.raises(ConfigurationError, match="HTTP 400"):
        list(model.stream(HELLO, max_tokens=100_000))  # beyond the context
    with pytest.raises(UpstreamUnavailable, match="chat model unreachable at http://127.0.0.1:9"):
        OpenAIChatModel("http://127.0.0.1:9/v1", "tiny-chat")


def test_a_chat_server_that_is_gone_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # the server is shared: stand in a dead port
    with pytest.raises(UpstreamUnavailable, match=f"chat model unreachable at {url}"):
        OpenAIChatModel(url, "tiny-chat")
