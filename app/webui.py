"""Open WebUI wired to kb: the environment that makes it kb's front end, and `kb webui`.

Open WebUI is configured by environment only (``ENABLE_PERSISTENT_CONFIG=false``
lets the environment win over what its database saved): kb is its one OpenAI
connection and its external document loader, Ollama and its own embedding are
off, and it forwards who is asking. docker-compose.yml sets the same variables;
a test keeps the two in step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from app.webui_client import WebUIAdmin
from app.webui_scope import FILTER_ID, FILTER_SOURCE

WEBUI_VERSION = "0.12.4"
DEFAULT_VENV = Path("~/.cache/kb/openwebui-venv")
PLACEHOLDER_KEY = "kb-no-key"  # Open WebUI skips the loader without a key; kb ignores it then

# Background tasks (titles, tags, follow-ups) tell kb so: it skips retrieval for them.
CONNECTION_CONFIG = {"0": {"headers": {"X-Kb-Task": "{{TASK}}"}}}
# Every upload is keyed by Open WebUI's file id, so a re-upload replaces the document.
LOADER_HEADERS = {"X-File-Id": "{{FILE_ID}}"}


def webui_environment(kb_url: str, api_key: str | None, data_dir: Path) -> dict[str, str]:
    """The variables that make Open WebUI at ``data_dir`` the front end of kb at ``kb_url``."""
    key = api_key or PLACEHOLDER_KEY
    base = kb_url.rstrip("/")
    return {
        "DATA_DIR": str(data_dir),
        "ENABLE_PERSISTENT_CONFIG": "false",
        # Chat: kb is the only model provider.
        "ENABLE_OLLAMA_API": "false",
        "ENABLE_OPENAI_API": "true",
        "OPENAI_API_BASE_URLS": f"{base}/v1",
        "OPENAI_API_KEYS": key,
        "OPENAI_API_CONFIGS": json.dumps(CONNECTION_CONFIG),
        "DEFAULT_MODELS": "kb",
        # Every user may use the kb model; kb itself decides which documents each one sees.
        "BYPASS_MODEL_ACCESS_CONTROL": "true",
        "ENABLE_EVALUATION_ARENA_MODELS": "false",
        "ENABLE_FORWARD_USER_INFO_HEADERS": "true",
        # Uploads: kb parses, chunks and embeds; Open WebUI neither embeds nor retrieves.
        "CONTENT_EXTRACTION_ENGINE": "external",
        "EXTERNAL_DOCUMENT_LOADER_URL": base,
        "EXTERNAL_DOCUMENT_LOADER_API_KEY": key,
        "EXTERNAL_DOCUMENT_LOADER_HEADERS": json.dumps(LOADER_HEADERS),
        "BYPASS_EMBEDDING_AND_RETRIEVAL": "true",
        # Deletions reach kb: every event goes to kb, which checks it against Open WebUI's
        # API. Webhooks carry no header, so the key rides in the URL; kb is usually on a
        # private address, which Open WebUI refuses without local fetching allowed.
        "WEBHOOK_URL": events_url(base) + (f"?token={api_key}" if api_key else ""),
        "ENABLE_LOCAL_WEB_FETCH": "true",
        # A file attached in a chat: its text goes in a system message, so the user
        # turn kb searches with stays the user's question.
        "RAG_SYSTEM_CONTEXT": "true",
        "ENABLE_WEB_SEARCH": "false",
        # Private and offline: nothing is fetched or reported.
        "OFFLINE_MODE": "true",
        "HF_HUB_OFFLINE": "1",
        "ANONYMIZED_TELEMETRY": "false",
        "DO_NOT_TRACK": "true",
        "SCARF_NO_ANALYTICS": "true",
    }


def webui_executable(venv: Path) -> Path:
    """The ``open-webui`` program in ``venv``, or an error saying how to install it."""
    program = venv.expanduser() / "bin" / "open-webui"
    if not program.is_file():
        raise FileNotFoundError(
            f"Open WebUI is not installed in {venv}: run `make webui-env` (it builds "
            f"open-webui=={WEBUI_VERSION} there), or point KB_WEBUI_VENV at an existing venv"
        )
    return program


def run_webui(
    venv: Path, kb_url: str, api_key: str | None, data_dir: Path, host: str, port: int,
    admin: tuple[str, str] | None = None,
) -> int:
    """Run ``open-webui serve`` in the foreground, wired to kb; returns its exit code.

    ``admin`` (e-mail, password): the admin created at first start, the one kb signs in
    as to follow deletions (KB_WEBUI_ADMIN_EMAIL, KB_WEBUI_ADMIN_PASSWORD).
    """
    program = webui_executable(venv)
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **webui_environment(kb_url, api_key, data_dir)}
    who = "the first account to sign up is the admin"
    if admin is not None:
        env["WEBUI_ADMIN_EMAIL"], env["WEBUI_ADMIN_PASSWORD"] = admin
        who = f"admin {admin[0]}"
    print(
        f"kb: Open WebUI on http://{host}:{port}, wired to kb at {kb_url} "
        f"(data in {data_dir}); {who}",
        file=sys.stderr,
    )
    command = [str(program), "serve", "--host", host, "--port", str(port)]
    # cwd: where Open WebUI keeps its generated secret key (.webui_secret_key).
    try:
        return subprocess.call(command, env=env, cwd=data_dir)
    except KeyboardInterrupt:
        return 130


def check_wiring(
    admin: WebUIAdmin, kb_url: str, api_key: str | None, secret: str, fix: bool
) -> list[tuple[str, str]]:
    """What ``kb webui --check`` reports: (status, what) for each piece of the wiring;
    status is ``ok``, ``fixed`` or ``missing``. With ``fix``, what is missing is put in place."""
    source = FILTER_SOURCE.read_text(encoding="utf-8")
    report = []
    problems = admin.filter_problems(source, secret)
    if not problems:
        report.append(("ok", f"filter {FILTER_ID}: installed, this version, active, global, "
                             "signing with kb's secret"))
    elif fix:
        report.append(("fixed", "filter: " + "; ".join(admin.ensure_filter(source, secret))))
    else:
        report += [("missing", p) for p in problems]
    events = events_url(kb_url)
    if admin.webhook_to(events) is not None:
        report.append(("ok", f"webhook: every event goes to {events}"))
    elif fix:
        admin.add_webhook(events + (f"?token={api_key}" if api_key else ""))
        report.append(("fixed", f"webhook to {events} registered (until Open WebUI restarts: "
                                "set WEBHOOK_URL as `kb webui` does to keep it)"))
    else:
        report.append(("missing", f"no webhook sends Open WebUI's events to {events}: "
                                  "deletions there reach kb only at its next reconcile"))
    return report


def events_url(kb_url: str) -> str:
    """Where Open WebUI sends its events to kb."""
    return f"{kb_url.rstrip('/')}/v1/webui/events"
