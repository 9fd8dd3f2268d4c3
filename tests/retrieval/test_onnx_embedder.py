"""The packaged model through ONNX Runtime (int8): its vectors, its cache, its fallback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import Source
from retrieval.embedders import LocalEmbedder, onnx_model, resolve_local_model
from retrieval.errors import ConfigurationError
from tests.conftest import MakeKb, chroma_only

PASSAGES = [
    "Aspirin reduces the risk of heart attack in patients with coronary artery disease.",
    "The mitochondria produce most of the cell's supply of adenosine triphosphate.",
    "Tidal forces from the Moon raise the oceans twice a day.",
    "Open WebUI sends uploaded files to the knowledge base for indexing.",
    "retrieval",
    " ".join(["Vaccination coverage among children rose steadily over the decade."] * 30),
]


def test_vectors_match_pytorch(embedder: LocalEmbedder, torch_embedder: LocalEmbedder) -> None:
    assert embedder.runtime == "onnx-int8-v2" and torch_embedder.runtime == ""
    assert embedder.embedding_id == "all-MiniLM-L6-v2+onnx-int8-v2:384"
    assert torch_embedder.embedding_id == "all-MiniLM-L6-v2:384"
    assert (embedder.dimension, embedder.max_tokens) == (384, torch_embedder.max_tokens)
    cosine = np.sum(embedder.embed(PASSAGES) * torch_embedder.embed(PASSAGES), axis=1)
    assert cosine.min() > 0.99 and cosine.mean() > 0.995
    # Short inputs run on the float graph: as close to torch as floats allow.
    query = "does aspirin prevent heart attacks"
    assert float(embedder.embed_query(query) @ torch_embedder.embed_query(query)) > 0.9999
    assert cosine[PASSAGES.index("retrieval")] > 0.9999
    # The same nearest passage for a query, whichever runtime embeds it.
    for model in (embedder, torch_embedder):
        assert int(np.argmax(model.embed(PASSAGES) @ model.embed_query(query))) == 0


def test_the_export_is_cached_and_a_damaged_file_is_exported_again(tmp_path: Path) -> None:
    cache = tmp_path / "models"
    first = LocalEmbedder(cache=cache)
    reference = first.embed(PASSAGES[:3])
    first.close()
    [folder] = cache.iterdir()
    model, manifest = folder / "model.onnx", json.loads((folder / "manifest.json").read_text())
    assert manifest["runtime"] == "onnx-int8-v2" and len(manifest["onnx_sha256"]) == 64
    assert len(manifest["float_sha256"]) == 64
    stamp = model.stat().st_mtime_ns
    LocalEmbedder(cache=cache).close()
    assert model.stat().st_mtime_ns == stamp  # loaded, not exported again
    for damaged in (model, folder / "float.onnx"):  # each graph's checksum is checked
        with damaged.open("r+b") as stream:  # one flipped byte: the checksum no longer matches
            stream.seek(damaged.stat().st_size // 2)
            byte = stream.read(1)
            stream.seek(-1, os.SEEK_CUR)
            stream.write(bytes([byte[0] ^ 0xFF]))
        again = LocalEmbedder(cache=cache)
        assert again.runtime == "onnx-int8-v2"
        assert onnx_model._intact(folder, manifest["source_sha256"])
        assert np.allclose(again.embed(PASSAGES[:3]), reference, atol=1e-5)
        again.close()
    assert [p.name for p in cache.iterdir()] == [folder.name]  # no export folders left


def test_a_model_of_another_pooling_falls_back_to_pytorch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source, copy = resolve_local_model(None), tmp_path / "cls-model"
    copy.mkdir()
    for item in source.iterdir():
        (copy / item.name).symlink_to(item)
    (copy / "1_Pooling").unlink()
    (copy / "1_Pooling").mkdir()
    pooling = json.loads((source / "1_Pooling" / "config.json").read_text())
    pooling.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    (copy / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    # at_level on our logger itself: an in-process ``kb`` run earlier set it to WARNING
    with caplog.at_level("INFO", logger="retrieval.embedders.local"):
        model = LocalEmbedder(copy, cache=tmp_path / "models")
    assert model.runtime == "" and model.embedding_id == f"{copy}:384"
    assert "embedding with PyTorch" in caplog.text
    assert not (tmp_path / "models").exists()  # nothing exported
    model.close()


@chroma_only  # about the model, not the store
def test_a_runtime_change_is_refused_until_reindex(
    make_kb: MakeKb, embedder: LocalEmbedder, torch_embedder: LocalEmbedder, tmp_path: Path
) -> None:
    doc = tmp_path / "tides.txt"
    doc.write_text("Tidal forces from the Moon raise the oceans twice a day.", encoding="utf-8")
    data = tmp_path / "data"
    kb = make_kb(data, use=torch_embedder)
    kb.ingest([Source("file:tides", "tides.txt", doc)])
    kb.close()
    kb = make_kb(data, use=embedder)
    with pytest.raises(ConfigurationError, match="run `kb reindex`"):
        kb.search("moon tides", k=3)
    kb.reindex()
    [hit] = kb.search("moon tides", k=3)
    assert hit.source == "tides.txt"
    assert kb.catalog.get_meta("embedding") == embedder.embedding_id
