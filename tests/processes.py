"""Real server processes for the integration tier: start, wait until they answer, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port

KB = Path(sys.executable).with_name("kb")


class ServerProcess:
    """A server started as a child process, logging to a file, ready once ``ready_url`` answers."""

    def __init__(
        self, command: list[str], log_path: Path, ready_url: str, *, env: dict[str, str],
        startup_seconds: float, cwd: Path | None = None,
    ) -> None:
        self.log_path = log_path
        self._log = log_path.open("a")  # a restart keeps the earlier run's lines
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
            start_new_session=True,  # stop() ends the server and its workers together
        )
        self._wait(ready_url, startup_seconds)

    def _wait(self, url: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.log_path.stem} exited at start-up:\n{self.log_tail()}")
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"{url} did not answer within {seconds:.0f} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's log, for failure messages."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """Interrupt the process group, then kill it if it lingers."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


class KbServer(ServerProcess):
    """`kb serve` on a free port with its own data directory."""

    def __init__(self, data_dir: Path, log_path: Path, **settings: str) -> None:
        """``settings``: KB_* variables without the prefix (``port``: a fixed one)."""
        self.port = int(settings.pop("port", 0)) or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "KB_DATA_DIR": str(data_dir), "KB_PORT": str(self.port)}
        env.update({f"KB_{k.upper()}": v for k, v in settings.items()})
        super().__init__(
            [str(KB), "serve"], log_path, f"{self.url}/readyz", env=env, startup_seconds=120
        )
