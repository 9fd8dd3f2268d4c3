"""The chat client and LLM answers against a real vLLM serving a tiny random-weight model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from retrieval.chat import OpenAIChatModel
from retrieval.errors import ConfigurationError, UpstreamUnavailable
from tests.app.helpers import upload
from tests.vllm_server import VllmServer

pytestmark = pytest.mark.integration
HELLO = [{"role": "user", "content": "Say something."}]


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """vLLM serving the tiny chat model (start-up takes a minute or two)."""
    server = VllmServer.tiny_chat(tmp_path_factory.mktemp("chat"))
    yield server
    server.stop()


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


def test_a_chat_server_that_dies_is_a_clear_error(chat: VllmServer) -> None:
    model = OpenAIChatModel(chat.url, "tiny-chat")
    chat.stop()
    with pytest.raises(UpstreamUnavailable, match=f"chat model unreachable at {chat.url}"):
        list(model.stream(HELLO, max_tokens=8))
