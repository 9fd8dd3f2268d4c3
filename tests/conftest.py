"""Shared fixtures: the real packaged model, loaded once, and knowledge bases in tmp dirs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from app.service import KnowledgeBase  # noqa: E402
from ingest.chunking import ChunkSettings  # noqa: E402
from ingest.loaders import Limits  # noqa: E402
from ingest.workers import ParseBudget, ParserPool  # noqa: E402
from retrieval.embedders import Embedder, LocalEmbedder  # noqa: E402
from retrieval.stores import StoreBackend  # noqa: E402
from retrieval.stores.chroma import ChromaBackend  # noqa: E402
from retrieval.stores.hybrid import HybridBackend  # noqa: E402
from retrieval.stores.milvus import MilvusBackend  # noqa: E402

MakeKb = Callable[..., KnowledgeBase]
# Dense pieces as the product makes them, but small: the tests' short texts are then
# stored as several pieces a chunk, so every write, copy, crash and recovery test runs
# through them (on the Chroma path; Milvus keeps one vector a chunk).
TEST_PIECE_TOKENS = 24
CHROMA = Path(sys.executable).with_name("chroma")
MILVUS_LITE = Path(sys.executable).with_name("milvus-lite")


def free_port() -> int:
    """A TCP port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_chroma(path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start a real `chroma run` server on a free port; returns it and its URL once it answers."""
    port = free_port()
    process = subprocess.Popen(
        [str(CHROMA), "run", "--path", str(path), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_up(process, f"{url}/api/v2/heartbeat", 60)
    return process, url


def start_milvus(path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start milvus-lite as a gRPC server on a free port (the client talks to it as to a
    Milvus server); returns it and its URL once it answers."""
    port = free_port()
    process = subprocess.Popen(
        [str(MILVUS_LITE), "server", "--data-dir", str(path), "--host", "127.0.0.1",
         "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return process, f"http://127.0.0.1:{port}"
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("milvus-lite did not listen within 60 s")


def wait_until_up(process: subprocess.Popen[Any], url: str, seconds: float) -> None:
    """Poll ``url`` until it answers 200; kill ``process`` and fail if it never does."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{url} did not answer within {seconds:.0f} s")


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real Chroma server shared by the tests (collections have unique names)."""
    process, url = start_chroma(tmp_path_factory.mktemp("chroma-server"))
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(params=["embedded", pytest.param("server", marks=pytest.mark.integration)])
def chroma_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ChromaBackend]:
    """A Chroma client: embedded, or the real Chroma server."""
    if request.param == "server":
        backend = ChromaBackend(url=request.getfixturevalue("chroma_server"))
    else:
        backend = ChromaBackend(path=tmp_path / "data" / "chroma")
    yield backend
    backend.close()


CHROMA_STORES = ["embedded", pytest.param("server", marks=pytest.mark.integration)]
STORES = [*CHROMA_STORES, "milvus"]
# For tests of the Chroma family's own parts (its tantivy folders, its Chroma files).
chroma_only = pytest.mark.parametrize("store_backend", CHROMA_STORES, indirect=True)
embedded_only = pytest.mark.parametrize("store_backend", ["embedded"], indirect=True)


@pytest.fixture(params=STORES)
def store_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreBackend]:
    """The store under test: embedded Chroma, the real Chroma server (each with its
    tantivy index), or milvus-lite; all under ``tmp_path/data`` as the service lays them out."""
    data = tmp_path / "data"
    backend: StoreBackend
    if request.param == "milvus":
        backend = MilvusBackend(str(data / "milvus.db"))
    elif request.param == "server":
        backend = HybridBackend(ChromaBackend(url=request.getfixturevalue("chroma_server")),
                                data / "lexical")
    else:
        backend = HybridBackend(ChromaBackend(path=data / "chroma"), data / "lexical")
    yield backend
    backend.close()


def store_settings(backend: StoreBackend) -> dict[str, str]:
    """The environment that points a `kb` process at the same store."""
    if isinstance(backend, MilvusBackend):
        return {"KB_STORE": "milvus", "KB_MILVUS_URI": backend.uri}
    return {} if backend.where == "embedded" else {"KB_CHROMA_URL": backend.where}


@pytest.fixture(scope="session")
def tiny_chat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """vLLM serving the tiny random-weight chat model (start-up takes a minute or two)."""
    from tests.vllm_server import VllmServer

    server = VllmServer.tiny_chat(tmp_path_factory.mktemp("chat"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def embedder() -> LocalEmbedder:
    """The real packaged all-MiniLM-L6-v2 as the service runs it (ONNX Runtime, int8),
    shared by every test (exported once into the user's model cache)."""
    return LocalEmbedder()


@pytest.fixture(scope="session")
def torch_embedder() -> LocalEmbedder:
    """The same model through PyTorch (sentence-transformers): the reference and fallback."""
    return LocalEmbedder(runtime="torch")


@pytest.fixture(scope="session")
def parser_pool() -> Iterator[ParserPool]:
    """Real parser processes shared by the tests (each costs a Python start)."""
    pool = ParserPool(2, ParseBudget(cpu_seconds=60, memory_mb=3072))
    yield pool
    pool.close()


@pytest.fixture
def make_kb(
    tmp_path: Path, embedder: LocalEmbedder, store_backend: StoreBackend,
    parser_pool: ParserPool,
) -> Iterator[MakeKb]:
    """Open knowledge bases on the store under test, under ``tmp_path``; closed afterwards."""
    opened: list[KnowledgeBase] = []

    def make(
        data_dir: Path | None = None, *, use: Embedder | None = None, limits: Limits | None = None,
        chunking: ChunkSettings | None = None, batch_size: int = 16,
        parser: ParserPool | None = None, piece_tokens: int = TEST_PIECE_TOKENS,
    ) -> KnowledgeBase:
        root = data_dir or tmp_path / "data"
        kb = KnowledgeBase(
            data_dir=root, embedder=use or embedder, backend=store_backend,
            limits=limits or Limits(), chunking=chunking or ChunkSettings(),
            batch_size=batch_size, parser=parser or parser_pool, piece_tokens=piece_tokens,
        )
        opened.append(kb)
        return kb

    yield make
    for kb in opened:
        try:
            kb.close()
        except Exception:  # already closed by the test
            pass


def write(path: Path, text: str) -> Path:
    """Write a UTF-8 text file and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
