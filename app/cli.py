"""The ``kb`` command line: serve, ingest, search, status, rm, reindex, eval, prepare, webui."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.settings import Settings
from ingest.loaders import SUPPORTED_EXTENSIONS
from ingest.pipeline import FAILED, Outcome
from retrieval.errors import KbError
from retrieval.search import MODES

EXIT_FAILED, EXIT_ERROR, EXIT_INTERRUPTED = 1, 2, 130
OWN_LOGGERS = ("app", "ingest", "retrieval", "kb")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kb`` console script."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args = _parser().parse_args(argv)
    # Our own warnings show; libraries' (pypdf's "EOF marker not found") would only
    # break into the progress bar: a file's failure reason is reported in the summary.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    for ours in OWN_LOGGERS:
        logging.getLogger(ours).setLevel(logging.WARNING)
    try:
        settings = Settings()
    except ValidationError as exc:
        return _error(f"invalid settings: {_settings_problem(exc)}")
    try:
        code: int = args.run(settings, args)
        return code
    except KbError as exc:
        return _error(str(exc))
    except KeyboardInterrupt:
        print("\ninterrupted: documents in flight were rolled back; finished ones are kept",
              file=sys.stderr)
        return EXIT_INTERRUPTED


def _error(message: str) -> int:
    print(f"kb: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def _settings_problem(exc: ValidationError) -> str:
    return "; ".join(
        f"KB_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kb", description="Private RAG knowledge base.")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    p = sub.add_parser("serve", help="start the HTTP API")
    p.add_argument("--host", help="bind address (default KB_HOST)")
    p.add_argument("--port", type=int, help="port (default KB_PORT)")
    p.add_argument(
        "--insecure-no-auth", action="store_true",
        help="listen beyond localhost without KB_API_KEY (anyone may read every document)",
    )
    p.set_defaults(run=cmd_serve)
    p = sub.add_parser("ingest", help="ingest files and folders (recursively)")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.set_defaults(run=cmd_ingest)
    p = sub.add_parser("search", help="search the knowledge base")
    p.add_argument("query")
    p.add_argument("-k", type=int, default=5, help="number of results (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--user", help="also search this Open WebUI user's private uploads (user id)"
    )
    p.add_argument("--mode", choices=MODES, default="hybrid", help="default hybrid")
    p.add_argument("--explain", action="store_true", help="show each stage's score and rank")
    p.set_defaults(run=cmd_search)
    p = sub.add_parser("status", help="counts, settings and failed documents")
    p.add_argument("--all", action="store_true", help="list every document")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=cmd_status)
    p = sub.add_parser("rm", help="remove documents by id or file name")
    p.add_argument("refs", nargs="+", metavar="DOC")
    p.set_defaults(run=cmd_rm)
    p = sub.add_parser("reindex", help="re-embed every document with the current settings")
    p.set_defaults(run=cmd_reindex)
    p = sub.add_parser(
        "prepare", help="export the in-process model to ONNX now (else the first start does)"
    )
    p.set_defaults(run=cmd_prepare)
    p = sub.add_parser("webui", help="start Open WebUI (installed by `make webui-env`) wired to kb")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--kb-url", help="kb's address (default http://127.0.0.1:KB_PORT)")
    p.add_argument(
        "--data-dir", type=Path, help="Open WebUI's data (default KB_DATA_DIR/open-webui)"
    )
    p.add_argument(
        "--check", action="store_true",
        help="say what of kb's wiring the Open WebUI at KB_WEBUI_URL has and lacks (no start)",
    )
    p.add_argument("--fix", action="store_true", help="with --check: put what is missing in place")
    p.set_defaults(run=cmd_webui)
    p = sub.add_parser("eval", help="retrieval quality on a BEIR data set")
    p.add_argument("dataset", type=Path, metavar="DATASET_DIR")
    p.add_argument("--split", default="train", help="qrels split (default train)")
    p.add_argument(
        "--mode", choices=MODES, action="append", help="only these modes (default: all)"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=cmd_eval)
    return parser


def _open(settings: Settings) -> Any:
    from app.factory import open_knowledge_base  # heavy imports only when needed

    return open_knowledge_base(settings)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """Run the API with uvicorn."""
    from app.main import serve

    host, port = args.host or settings.host, args.port or settings.port
    if not settings.api_key and not _is_loopback(host):
        if not (args.insecure_no_auth or settings.insecure_no_auth):
            return _error(
                f"refusing to listen on {host} without KB_API_KEY: anyone who can reach it "
                "could read every user's documents. Set KB_API_KEY (Open WebUI sends it), "
                "listen on 127.0.0.1, or pass --insecure-no-auth if the network is yours alone"
            )
        print(f"kb: warning: listening on {host} with no API key", file=sys.stderr)
    print(f"kb: serving on http://{host}:{port} (API docs at /docs)", file=sys.stderr)
    serve(settings, host, port)
    return 0


def _is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def collect_files(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """Files to ingest from PATH arguments, and those skipped in folders (unsupported type).

    A file named explicitly is always tried, so its error is reported; inside a
    folder, files with unsupported extensions and hidden files are skipped.
    """
    files: list[Path] = []
    skipped: list[Path] = []
    for path in paths:
        if not path.exists():
            raise KbError(f"{path}: no such file or folder")
        if path.is_file():
            files.append(path)
            continue
        for found in sorted(p for p in path.rglob("*") if p.is_file()):
            hidden = any(part.startswith(".") for part in found.relative_to(path).parts)
            wanted = found.suffix.lower() in SUPPORTED_EXTENSIONS and not hidden
            (files if wanted else skipped).append(found)
    return files, skipped


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    """Ingest with a progress bar, then print a summary; exit 1 if any file failed."""
    files, skipped = collect_files(args.paths)
    kb = _open(settings)
    try:
        sources = [kb.upload_source("file", str(p.resolve()), p.name, p, None) for p in files]
        with _progress(len(sources), "ingest") as tick:
            outcomes = kb.ingest(sources, tick)
    finally:
        kb.close()
    _print_summary(outcomes, len(skipped))
    return EXIT_FAILED if any(o.status == FAILED for o in outcomes) else 0


def _progress(total: int, label: str) -> Any:
    """A tqdm bar (on stderr) and a callback advancing it per outcome."""
    from contextlib import contextmanager

    from tqdm import tqdm

    @contextmanager
    def bar() -> Iterator[Callable[[Outcome], None]]:
        with tqdm(total=total, desc=label, unit="file", file=sys.stderr, leave=True) as t:
            def tick(outcome: Outcome) -> None:
                t.update(1)
                t.set_postfix_str(outcome.source[-30:], refresh=False)
            yield tick

    return bar()


def _print_summary(outcomes: list[Outcome], skipped: int) -> None:
    counts = Counter(o.status for o in outcomes)
    parts = [f"{counts.get(s, 0)} {s}" for s in ("added", "updated", "unchanged", "failed")]
    if skipped:
        parts.append(f"{skipped} skipped (unsupported type in folder)")
    print(", ".join(parts))
    for o in outcomes:
        if o.status == FAILED:
            print(f"  failed: {o.source}: {o.error}")


def cmd_search(settings: Settings, args: argparse.Namespace) -> int:
    """Print the best chunks for a query."""
    kb = _open(settings)
    try:
        hits = kb.search(args.query, args.k, args.user, args.mode)
    finally:
        kb.close()
    if args.json:
        print(json.dumps({"results": [_hit_json(h) for h in hits]}, ensure_ascii=False, indent=2))
        return 0
    for rank, h in enumerate(hits, 1):
        where = f"{h.source}" + (f", page {h.page}" if h.page else "") + (" (OCR)" if h.ocr
                                                                           else "")
        text = " ".join(h.text.split())
        print(f"{rank}. [{h.score:.3f}] {where}\n   {text[:300]}")
        if args.explain:
            print(f"   {_explain(h)}")
    if not hits:
        print("no results (is anything ingested? see `kb status`)")
    return 0


def _hit_json(h: Any) -> dict[str, Any]:
    keys = ("document_id", "source", "page", "chunk_index", "text", "score", "section",
            "scores", "ranks", "ocr")
    return {k: getattr(h, k) for k in keys}


def _explain(h: Any) -> str:
    """``dense 0.512 (#3) · lexical 7.20 (#1)``: how each stage saw the hit."""
    stages = [f"{stage} {h.scores[stage]:.3f} (#{h.ranks[stage]})" for stage in h.scores]
    missing = [f"{s}: not in its top candidates" for s in ("dense", "lexical")
               if s not in h.scores and len(h.scores) > 1]
    return " · ".join(stages + missing)


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    """Counts, settings and the documents that failed."""
    kb = _open(settings)
    try:
        summary = kb.status()
        docs = kb.documents(None if args.all else "failed")
    finally:
        kb.close()
    if args.json:
        rows = [{"id": d.id, "source": d.source, "status": d.status, "chunks": d.chunks,
                 "owner": d.owner, "error": d.error, "pages": d.pages,
                 "ocr_pages": d.ocr_pages, "blank_pages": d.blank_pages} for d in docs]
        print(json.dumps({"status": summary, "documents": rows}, indent=2))
        return 0
    for key, value in summary.items():
        print(f"{key:>20}: {value}")
    for d in docs:
        reason = f"  ({d.error})" if d.error else ""
        owner = f"  [private to {d.owner}]" if d.owner else ""
        print(f"  {d.id}  {d.status:<8} {d.chunks:>6}  {d.source}{_pages(d)}{owner}{reason}")
    return 0


def _pages(doc: Any) -> str:
    """`` (12 pages: 10 OCR'd, 1 blank)`` for a paged document that needed OCR."""
    if not doc.pages or not (doc.ocr_pages or doc.blank_pages):
        return ""
    parts = [f"{doc.ocr_pages} OCR'd"] if doc.ocr_pages else []
    parts += [f"{doc.blank_pages} blank"] if doc.blank_pages else []
    return f"  ({doc.pages} page{'' if doc.pages == 1 else 's'}: {', '.join(parts)})"


def cmd_rm(settings: Settings, args: argparse.Namespace) -> int:
    """Remove documents; exit 1 if any reference matched nothing."""
    kb = _open(settings)
    missing = 0
    try:
        for ref in args.refs:
            try:
                for doc in kb.remove(ref):
                    print(f"removed {doc.source} ({doc.id})")
            except KbError as exc:
                print(f"kb: {exc}", file=sys.stderr)
                missing += 1
    finally:
        kb.close()
    return EXIT_FAILED if missing else 0


def cmd_reindex(settings: Settings, args: argparse.Namespace) -> int:
    """Re-embed everything into a new collection and switch to it when complete."""
    kb = _open(settings)
    try:
        total = kb.counts().get("documents_indexed", 0)
        with _progress(total, "reindex") as tick:
            outcomes = kb.reindex(tick)
    finally:
        kb.close()
    print(f"re-indexed {len(outcomes)} documents into {kb.collection}")
    return 0


def cmd_prepare(settings: Settings, args: argparse.Namespace) -> int:
    """Load the embedder once, so the in-process model's ONNX export is cached (image builds,
    `make install`); an export that fails is an error here, not a silent PyTorch fallback."""
    from app.factory import embedder_from

    if settings.embedding_url:
        print(f"nothing to prepare: kb embeds through {settings.embedding_url}")
        return 0
    embedder = embedder_from(settings)
    embedder.close()
    if settings.embedding_runtime == "onnx" and not embedder.runtime:
        return _error(f"{embedder.name} cannot run on ONNX Runtime (see the warning above); "
                      "set KB_EMBEDDING_RUNTIME=torch to use PyTorch")
    print(f"ready: {embedder.embedding_id}")
    return 0


def _check_webui(settings: Settings, kb_url: str, api_key: str | None, fix: bool) -> int:
    """`kb webui --check [--fix]`: report (and repair) the wiring; 1 when anything is missing."""
    from app.webui import check_wiring
    from app.webui_client import admin_from
    from app.webui_scope import scope_secret

    try:
        admin = admin_from(settings)
        if admin is None:
            return _error("set KB_WEBUI_URL (and the admin's credentials) to check Open WebUI")
        try:
            secret = scope_secret(settings.data_dir.expanduser())
            report = check_wiring(admin, kb_url, api_key, secret, fix)
        finally:
            admin.close()
    except KbError as exc:
        return _error(str(exc))
    print(f"Open WebUI at {admin.url}, wired to kb at {kb_url}:")
    for status, what in report:
        print(f"  {status:8} {what}")
    missing = [s for s, _ in report if s == "missing"]
    if missing:
        print("run `kb webui --check --fix` to put it in place")
    return 1 if missing else 0


def cmd_webui(settings: Settings, args: argparse.Namespace) -> int:
    """Run Open WebUI from its own venv with the environment that makes it kb's front end."""
    from app.webui import run_webui

    kb_url = args.kb_url or f"http://127.0.0.1:{settings.port}"
    data_dir = (args.data_dir or settings.data_dir / "open-webui").expanduser().resolve()
    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    if args.check or args.fix:
        return _check_webui(settings, kb_url, api_key, args.fix)
    admin = None
    if settings.webui_admin_email and settings.webui_admin_password:
        admin = (settings.webui_admin_email, settings.webui_admin_password.get_secret_value())
    if not settings.webui_url:
        print(
            f"kb: to have kb follow deletions made in Open WebUI, start `kb serve` with "
            f"KB_WEBUI_URL=http://{args.host}:{args.port} and KB_WEBUI_ADMIN_EMAIL/PASSWORD "
            "(or KB_WEBUI_API_KEY)",
            file=sys.stderr,
        )
    try:
        return run_webui(
            settings.webui_venv, kb_url, api_key, data_dir, args.host, args.port, admin
        )
    except FileNotFoundError as exc:
        return _error(str(exc))


def cmd_eval(settings: Settings, args: argparse.Namespace) -> int:
    """Index a BEIR corpus in its own data directory and score retrieval."""
    from app.evaluate import run_eval

    result = run_eval(settings, args.dataset, args.split, tuple(args.mode or MODES))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['documents']} documents indexed in {result['index_seconds']} s, "
          f"{result['queries']} queries")
    metrics = list(next(iter(result["modes"].values())))
    print(f"{'mode':<14}" + "".join(f"{m:>12}" for m in metrics))
    for mode, scores in result["modes"].items():
        print(f"{mode:<14}" + "".join(f"{scores[m]:>12.4f}" for m in metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
