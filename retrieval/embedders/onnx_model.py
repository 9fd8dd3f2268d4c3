"""A sentence-transformers model through ONNX Runtime with int8 weights.

The first start exports the model from its local weights with torch (the
transformer, mean pooling and normalisation as one graph), quantises the
weights of its matrix products to int8 (per channel) with ONNX Runtime, checks
the result against torch, and caches the file with a manifest of checksums.
Later starts load the cached file without importing torch. A changed model
folder (a new checksum) gets a new export; a damaged cache file is exported
again. Nothing is downloaded.

Three matrix products stay in float: the first layer's attention output and
the feed-forward outputs of the first and third layers. Quantising each of
the 36 alone and measuring the vectors' error put these three first for
MiniLM; they hold an eighth of the model's multiply-adds. Inputs of at most
``SHORT_TOKENS`` tokens (a title, a heading, most queries) run on the float
graph, kept beside the int8 one: with few tokens each weighs much in the mean,
so quantisation errs most there, and those inputs cost next to nothing
(benchmarks/README.md, "ingest_throughput", measures speed and cosine).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

EXPORT_VERSION = 2  # bump when the export or quantisation changes
# Part of the embedding id, with the recipe's version: vectors of one export are never
# mixed with torch's or with another recipe's.
RUNTIME = f"onnx-int8-v{EXPORT_VERSION}"
MIN_COSINE = 0.98  # an export farther than this from torch on the probe texts is refused
FLOAT_FILE = "float.onnx"  # the unquantised graph, kept beside model.onnx
SHORT_TOKENS = 16  # inputs this short (special tokens included) run on the float graph
# The products kept in float, by the end of their node names (see the module's docstring).
KEPT_IN_FLOAT = (
    "/layer.0/attention/output/dense/MatMul",
    "/layer.0/output/dense/MatMul",
    "/layer.2/output/dense/MatMul",
)
SOURCE_FILES = (
    "config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json",
    "modules.json", "sentence_bert_config.json", "1_Pooling/config.json",
)
PROBES = (
    "Mean pooling averages the token vectors of a passage.",
    "ONNX Runtime runs the exported graph on the CPU.",
    "short",
)


class ExportFailed(Exception):
    """The model could not be exported or its export does not match torch."""


def supported(model: Path) -> bool:
    """Whether the folder is a transformer with mean pooling and normalisation, as exported."""
    try:
        modules = json.loads((model / "modules.json").read_text(encoding="utf-8"))
        pooling = json.loads((model / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    return kinds == ["Transformer", "Pooling", "Normalize"] and bool(
        pooling.get("pooling_mode_mean_tokens")
    ) and sum(bool(v) for k, v in pooling.items() if k.startswith("pooling_mode")) == 1


def max_tokens(model: Path) -> int:
    """The longest input the sentence-transformers model takes, special tokens included."""
    config = json.loads((model / "sentence_bert_config.json").read_text(encoding="utf-8"))
    return int(config["max_seq_length"])


def cached_export(model: Path, cache: Path, name: str) -> Path:
    """The int8 ONNX file for ``model``, exported into ``cache`` when missing or damaged."""
    digest = _digest(model)
    folder = cache / f"{_safe(name)}-{RUNTIME}-{digest[:16]}"
    if _intact(folder, digest):
        return folder / "model.onnx"
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=cache))
    work.chmod(0o755)  # readable by the service user when made at image build
    try:
        try:
            _export(model, work / "model.onnx")
        except ExportFailed:
            raise
        except Exception as exc:  # torch's exporter and ONNX Runtime raise many kinds
            raise ExportFailed(f"cannot export {name} to ONNX: {exc}") from exc
        _write_manifest(work, digest)
        shutil.rmtree(folder, ignore_errors=True)  # a damaged earlier export
        try:
            work.rename(folder)
        except OSError:  # another process finished the same export first
            if not _intact(folder, digest):
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder / "model.onnx"


class OnnxEncoder:
    """Tokenise with the model's fast tokenizer and run the graphs; unit vectors out.

    ``onnx_file`` is the int8 graph; the float graph beside it (``float.onnx``) runs the
    inputs of at most ``short_tokens`` tokens, batched apart from the others.
    """

    def __init__(self, onnx_file: Path, model: Path, threads: int | None = None,
                 short_tokens: int = SHORT_TOKENS) -> None:
        from tokenizers import Tokenizer

        threads = threads or os.cpu_count() or 1
        self._int8 = _session(onnx_file, threads)
        self._float = _session(onnx_file.with_name(FLOAT_FILE), threads)
        self._short_tokens = short_tokens
        self._tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_tokens(model))
        self._tokenizer.no_padding()  # each batch is padded to its own longest input

    def __call__(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """Vectors for ``texts`` in their order, run in length-sorted batches."""
        encoded = self._tokenizer.encode_batch(list(texts))
        sizes = [len(e.ids) for e in encoded]
        order = sorted(range(len(texts)), key=lambda i: -sizes[i])
        long = [i for i in order if sizes[i] > self._short_tokens]
        vectors: np.ndarray | None = None
        for group, session in ((long, self._int8), (order[len(long):], self._float)):
            for first in range(0, len(group), batch_size):
                part = group[first : first + batch_size]
                out = _run(session, [encoded[i].ids for i in part])
                if vectors is None:
                    vectors = np.empty((len(texts), out.shape[1]), dtype=np.float32)
                vectors[part] = out
        return vectors if vectors is not None else np.empty((0, 0), dtype=np.float32)


def _run(session: Any, inputs: list[list[int]]) -> np.ndarray:
    """One batch through ``session``, padded to its longest input (masked, so the pad id
    does not matter)."""
    ids = np.zeros((len(inputs), max(map(len, inputs))), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, tokens in enumerate(inputs):
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    return np.asarray(session.run(None, feeds)[0], dtype=np.float32)


def _session(onnx_file: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: its optimiser notes are not for users
    # Idle pool threads must not spin: parser workers need those cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])


def _export(model: Path, target: Path) -> None:
    """Export ``model`` with torch, quantise it to ``target``, check it against torch."""
    try:
        import torch
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise ExportFailed(f"cannot export to ONNX: {exc}") from exc

    hf_logging.disable_progress_bar()
    with _quiet():
        network = AutoModel.from_pretrained(
            str(model), local_files_only=True, attn_implementation="eager"
        ).eval()
        pooled = _pooled(network)
        float_file = target.with_name(FLOAT_FILE)
        ids = torch.randint(1000, 2000, (3, 12))
        mask = torch.ones_like(ids)
        mask[1, 7:] = mask[2, 3:] = 0  # padding in the example, so masking is traced
        axes = {"batch": 0, "tokens": 1}
        names = ["input_ids", "attention_mask", "token_type_ids"]
        torch.onnx.export(
            pooled, (ids, mask, torch.zeros_like(ids)), str(float_file),
            input_names=names, output_names=["embedding"], opset_version=17, dynamo=False,
            dynamic_axes={**{n: {v: k for k, v in axes.items()} for n in names},
                          "embedding": {0: "batch"}},
        )
        kept = _kept_in_float(float_file)
        quantize_dynamic(
            str(float_file), str(target), weight_type=QuantType.QInt8, per_channel=True,
            op_types_to_quantize=["MatMul"], nodes_to_exclude=kept,
            extra_options={"MatMulConstBOnly": True},
        )
        expected = _torch_vectors(network, model, list(PROBES))
    # Both graphs are checked: the int8 one on every probe, then as the encoder runs.
    got = np.concatenate([
        OnnxEncoder(target, model, threads=1, short_tokens=limit)(list(PROBES), len(PROBES))
        for limit in (0, SHORT_TOKENS)
    ])
    expected = np.concatenate([expected, expected])
    cosine = float(np.min(np.sum(got * expected, axis=1)))
    if cosine < MIN_COSINE:
        raise ExportFailed(f"the ONNX export differs from torch (cosine {cosine:.3f})")


def _kept_in_float(graph_file: Path) -> list[str]:
    """Names of the graph's products that stay in float (``KEPT_IN_FLOAT``)."""
    import onnx

    nodes = onnx.load(str(graph_file)).graph.node
    kept = [n.name for n in nodes if n.name.endswith(KEPT_IN_FLOAT)]
    if len(kept) != len(KEPT_IN_FLOAT):
        raise ExportFailed(f"unexpected graph: found {kept} for the products kept in float")
    return kept


def _pooled(network: Any) -> Any:
    """The transformer with mean pooling and normalisation, as one torch module (torch is
    imported only when exporting, so the class is made here)."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = network

        def forward(self, ids: Any, mask: Any, types: Any) -> Any:
            hidden = self.m(input_ids=ids, attention_mask=mask, token_type_ids=types)
            weights = mask.unsqueeze(-1).to(hidden.last_hidden_state.dtype)
            mean = (hidden.last_hidden_state * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, dim=-1)

    return Pooled().eval()


def _torch_vectors(network: Any, model: Path, texts: list[str]) -> np.ndarray:
    import torch
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
    tokenizer.enable_truncation(max_tokens(model))
    tokenizer.enable_padding()
    encoded = tokenizer.encode_batch(texts)
    ids = torch.tensor([e.ids for e in encoded])
    mask = torch.tensor([e.attention_mask for e in encoded])
    with torch.no_grad():
        return np.asarray(_pooled(network)(ids, mask, torch.zeros_like(ids)).numpy())


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's and quantiser's warnings and log lines (not for users)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def _digest(model: Path) -> str:
    """A checksum of the files the export is made from."""
    sha = hashlib.sha256()
    for name in SOURCE_FILES:
        path = model / name
        if path.is_file():
            sha.update(name.encode() + b"\0")
            sha.update(_file_sha(path).encode())
    return sha.hexdigest()


def _file_sha(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            sha.update(block)
    return sha.hexdigest()


def _write_manifest(folder: Path, source: str) -> None:
    manifest = {"runtime": RUNTIME, "export_version": EXPORT_VERSION, "source_sha256": source,
                "onnx_sha256": _file_sha(folder / "model.onnx"),
                "float_sha256": _file_sha(folder / FLOAT_FILE)}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")


def _intact(folder: Path, source: str) -> bool:
    """Whether the cached export exists, is for this source, and matches its checksum."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        return bool(manifest["source_sha256"] == source
                    and manifest["onnx_sha256"] == _file_sha(folder / "model.onnx")
                    and manifest["float_sha256"] == _file_sha(folder / FLOAT_FILE))
    except (OSError, ValueError, KeyError):
        return False


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
