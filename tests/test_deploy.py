"""The deployment files, checked without a Docker engine (none runs here)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import venv
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def env_of(service: str) -> dict[str, str]:
    """A service's environment as a dict."""
    return {k: str(v) for k, v in SERVICES[service].get("environment", {}).items()}


def test_every_service_has_an_image_or_build_and_the_product_is_complete() -> None:
    assert set(SERVICES) == {
        "vllm-embed", "vllm-chat", "vllm-rerank", "chroma", "kb", "open-webui",
        "milvus", "milvus-etcd", "milvus-minio",
    }
    for name, service in SERVICES.items():
        assert service.get("image") or service.get("build"), name
    assert SERVICES["kb"]["build"] == "."
    assert SERVICES["vllm-chat"]["profiles"] == ["llm"]  # optional
    assert SERVICES["vllm-rerank"]["profiles"] == ["rerank"]
    for name in ("milvus", "milvus-etcd", "milvus-minio"):
        assert SERVICES[name]["profiles"] == ["milvus"], name


def test_health_checks_guard_every_dependency() -> None:
    assert "HEALTHCHECK" in DOCKERFILE  # kb's own check lives in its image
    assert "tesseract-ocr-chi-sim" in DOCKERFILE  # KB_OCR=auto's reader of Latin script
    for name in ("vllm-embed", "vllm-chat", "vllm-rerank", "chroma", "milvus", "milvus-etcd",
                 "milvus-minio"):
        assert SERVICES[name]["healthcheck"]["test"], name
    for name, service in SERVICES.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in SERVICES, (name, dependency)
            if rule.get("condition") == "service_healthy":
                assert "healthcheck" in SERVICES[dependency] or dependency == "kb"


def test_every_kb_variable_is_a_real_setting() -> None:
    known = {f"KB_{name.upper()}" for name in Settings.model_fields}
    for service in SERVICES.values():
        for key in service.get("environment", {}):
            if key.startswith("KB_"):
                assert key in known, f"{key} is not a kb setting"
    kb = env_of("kb")
    assert kb["KB_EMBEDDING_URL"] == "http://vllm-embed:8000/v1"
    assert kb["KB_CHROMA_URL"] == "http://chroma:8000"
    assert kb["KB_DATA_DIR"] == "/data" and "${KB_API_KEY:?" in kb["KB_API_KEY"]


def test_the_milvus_profile_is_a_standalone_milvus_kb_can_switch_to() -> None:
    milvus, kb = SERVICES["milvus"], env_of("kb")
    assert milvus["command"] == ["milvus", "run", "standalone"]
    assert set(milvus["depends_on"]) == {"milvus-etcd", "milvus-minio"}
    assert all(r["condition"] == "service_healthy" for r in milvus["depends_on"].values())
    assert env_of("milvus")["ETCD_ENDPOINTS"] == "milvus-etcd:2379"
    assert env_of("milvus")["MINIO_ADDRESS"] == "milvus-minio:9000"
    assert "9091/healthz" in " ".join(milvus["healthcheck"]["test"])
    # kb waits for Milvus only when the profile runs it, and stores there when told to.
    assert SERVICES["kb"]["depends_on"]["milvus"] == {
        "condition": "service_healthy", "required": False,
    }
    assert kb["KB_STORE"] == "${KB_STORE:-chroma}"
    assert kb["KB_MILVUS_URI"] == "${KB_MILVUS_URI:-http://milvus:19530}"
    assert Settings(store="milvus", milvus_uri="http://milvus:19530").store == "milvus"
    example = (ROOT / ".env.example").read_text()
    assert "# KB_STORE=milvus" in example and "# KB_MILVUS_URI=http://milvus:19530" in example


def test_the_embedding_server_serves_the_model_kb_asks_for() -> None:
    args = dict(a.removeprefix("--").split("=", 1) for a in SERVICES["vllm-embed"]["command"])
    assert args["model"] == env_of("kb")["KB_EMBEDDING_MODEL"] == "Qwen/Qwen3-Embedding-4B"
    assert args["runner"] == "pooling" and int(args["max-model-len"]) >= 512
    # kb may ask for shorter vectors: vLLM refuses "dimensions" unless the model is Matryoshka.
    assert "KB_EMBEDDING_DIMENSIONS" in env_of("kb")
    assert json.loads(args["hf-overrides"]) == {"is_matryoshka": True}
    for name in ("vllm-embed", "vllm-chat", "vllm-rerank"):
        devices = SERVICES[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"]


def test_the_reranker_is_served_as_design_says_qwen3_reranker_needs() -> None:
    args = dict(a.removeprefix("--").split("=", 1) for a in SERVICES["vllm-rerank"]["command"])
    assert args["model"] == "Qwen/Qwen3-Reranker-0.6B" and args["runner"] == "pooling"
    assert json.loads(args["hf-overrides"]) == {
        "architectures": ["Qwen3ForSequenceClassification"],
        "classifier_from_token": ["no", "yes"],
        "is_original_qwen3_reranker": True,
    }
    assert args["chat-template"].endswith("qwen3_reranker.jinja")
    kb = env_of("kb")
    assert kb["KB_RERANK_URL"] == "${KB_RERANK_URL:-}" and "KB_RERANK_MODEL" in kb
    example = (ROOT / ".env.example").read_text()
    assert "KB_RERANK_URL=http://vllm-rerank:8000/v1" in example
    assert f"KB_RERANK_MODEL={args['model']}" in example


def test_open_webui_is_wired_to_kb_exactly_as_kb_webui_does() -> None:
    from app.webui import webui_environment

    webui = env_of("open-webui")
    expected = webui_environment("http://kb:8000", "${KB_API_KEY}", Path("/app/backend/data"))
    del expected["DATA_DIR"]  # the image's default, kept on the open-webui-data volume
    assert {k: webui.get(k) for k in expected} == expected
    assert webui["OPENAI_API_BASE_URLS"] == "http://kb:8000/v1"
    assert json.loads(webui["OPENAI_API_CONFIGS"])["0"]["headers"] == {"X-Kb-Task": "{{TASK}}"}


def test_kb_follows_deletions_in_the_open_webui_it_sends_events_to() -> None:
    kb, webui = env_of("kb"), env_of("open-webui")
    port = SERVICES["open-webui"]["ports"][0].split(":")[-1]
    assert kb["KB_WEBUI_URL"] == f"http://open-webui:{port}"
    # kb signs in as the admin Open WebUI creates at first start.
    assert kb["KB_WEBUI_ADMIN_EMAIL"].startswith("${WEBUI_ADMIN_EMAIL:?")
    assert webui["WEBUI_ADMIN_EMAIL"] == "${WEBUI_ADMIN_EMAIL}"
    assert webui["WEBHOOK_URL"] == "http://kb:8000/v1/webui/events?token=${KB_API_KEY}"
    example = (ROOT / ".env.example").read_text()
    assert "WEBUI_ADMIN_EMAIL=" in example and "WEBUI_ADMIN_PASSWORD=" in example


def test_ports_and_volumes_are_consistent() -> None:
    host_ports = [p.split(":")[0] for s in SERVICES.values() for p in s.get("ports", [])]
    assert len(host_ports) == len(set(host_ports))
    assert "8000:8000" in SERVICES["kb"]["ports"] and "EXPOSE 8000" in DOCKERFILE
    declared = set(COMPOSE["volumes"])
    used = {v.split(":")[0] for s in SERVICES.values() for v in s.get("volumes", [])}
    assert used == declared
    assert "kb-data:/data" in SERVICES["kb"]["volumes"] and "KB_DATA_DIR=/data" in DOCKERFILE


def test_image_runs_as_non_root() -> None:
    assert re.search(r"^USER kb$", DOCKERFILE, re.M)
    assert "FROM python:3.11-slim" in DOCKERFILE


@pytest.mark.slow
def test_the_image_install_works_from_only_what_the_dockerfile_copies(tmp_path: Path) -> None:
    """Install kb the way the Dockerfile does (torch first, then `pip install .` of the copied
    files), without Docker, and start it: catches a file the image forgets to copy."""
    context = tmp_path / "src"
    context.mkdir()
    copied = [line.split()[1:-1] for line in DOCKERFILE.splitlines() if line.startswith("COPY ")]
    for sources in copied:
        for name in sources:
            copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
            copy(ROOT / name, context / name)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)  # the Dockerfile's CPU torch
    subprocess.run([*pip, "."], cwd=context, check=True)
    shutil.rmtree(context)  # as `rm -rf /src`: the install must not need the sources
    probe = (
        "from app.main import create_app; from app.settings import Settings;"
        "import pypdfium2, rapidocr_onnxruntime;"  # the OCR the image reads scans with
        "print(' '.join(create_app(Settings()).openapi()['paths']))"
    )
    out = subprocess.run(
        [str(env_dir / "bin" / "python"), "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert {"/v1/search", "/v1/documents", "/readyz"} <= set(out.stdout.split())
    help_text = subprocess.run(
        [str(env_dir / "bin" / "kb"), "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "ingest" in help_text
    # `RUN kb prepare`: the ONNX export is made at build time, from the installed weights.
    assert "RUN kb prepare" in DOCKERFILE and "ENV KB_MODEL_CACHE=" in DOCKERFILE
    prepared = subprocess.run(
        [str(env_dir / "bin" / "kb"), "prepare"], capture_output=True, text=True, check=True,
        cwd=tmp_path, env={**os.environ, "KB_MODEL_CACHE": str(tmp_path / "models")},
    )
    assert prepared.stdout.strip() == "ready: all-MiniLM-L6-v2+onnx-int8-v2:384"
    assert prepared.stderr == ""
    assert len(list((tmp_path / "models").glob("*/model.onnx"))) == 1
