"""The in-process embedder with the real packaged model."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from retrieval.embedders import LocalEmbedder, format_query, make_embedder
from retrieval.errors import ConfigurationError, UpstreamUnavailable


def test_vectors_are_unit_length_and_semantic(embedder: LocalEmbedder) -> None:
    assert (embedder.dimension, embedder.max_tokens) == (384, 256)
    docs = embedder.embed_documents(["A cat sat on the mat.", "Stock markets fell sharply."])
    assert docs.shape == (2, 384) and docs.dtype == np.float32
    assert np.allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5)
    query = embedder.embed_query("kitten resting on a rug")
    assert float(docs[0] @ query) > float(docs[1] @ query)


@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_mini_batches_keep_the_input_order(
    runtime: str, embedder: LocalEmbedder, torch_embedder: LocalEmbedder
) -> None:
    model = embedder if runtime == "onnx" else torch_embedder
    texts = [f"{'word ' * (i % 7)}sentence number {i}" for i in range(70)]  # 3 mini-batches
    expected = torch_embedder._encoder(texts, 70)  # one call, no mini-batches, PyTorch
    similarity = model.embed(texts) @ expected.T
    assert (similarity.argmax(axis=1) == np.arange(70)).all()
    assert np.diag(similarity).min() > (0.98 if runtime == "onnx" else 0.99999)
    assert model.embed([]).shape == (0, 384)


def test_a_query_does_not_wait_for_a_large_ingest(embedder: LocalEmbedder) -> None:
    bulk = [f"Chunk {i} about ocean currents, tides and coastal erosion. " * 8 for i in range(600)]
    done: list[float] = []
    ingest = threading.Thread(target=lambda: (embedder.embed(bulk), done.append(time.time())))
    ingest.start()
    time.sleep(0.5)  # the bulk encode is under way
    embedder.embed_query("tides")
    answered = time.time()
    ingest.join()
    assert done and answered < done[0] - 1.0  # long before the bulk encode finished


def test_query_instruction_changes_only_queries(embedder: LocalEmbedder) -> None:
    assert format_query(None, "q") == "q"
    assert format_query("Find passages", "q") == "Instruct: Find passages\nQuery:q"
    plain = embedder.embed_query("solar power")
    embedder.query_instruction = "Given a question, retrieve passages that answer it"
    try:
        instructed = embedder.embed_query("solar power")
    finally:
        embedder.query_instruction = None
    assert not np.allclose(plain, instructed)


def test_token_counts_match_the_model_tokenizer(
    embedder: LocalEmbedder, torch_embedder: LocalEmbedder
) -> None:
    text = "Tokenization of unbelievably long words"
    tokens = torch_embedder._encoder.model.tokenizer.tokenize(text)  # type: ignore[attr-defined]
    assert embedder.count_tokens(text) == len(tokens) == torch_embedder.count_tokens(text)


def test_unknown_model_or_server_settings_are_clear_errors() -> None:
    with pytest.raises(ConfigurationError, match="not a local model folder"):
        make_embedder(None, "some-org/not-downloaded")
    with pytest.raises(UpstreamUnavailable, match="unreachable at http://127.0.0.1:9/v1"):
        make_embedder("http://127.0.0.1:9/v1", None)
