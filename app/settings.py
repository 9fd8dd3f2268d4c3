"""Settings: read once from the environment (prefix ``KB_``) and an optional ``.env``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.ocr import OcrSettings
from ingest.pieces import DEFAULT_PIECE_TOKENS
from retrieval.embedders import DEFAULT_MODEL

MB = 2**20


class Settings(BaseSettings):
    """Every setting of the service; see the README for each one."""

    model_config = SettingsConfigDict(env_prefix="KB_", env_file=".env", extra="ignore")

    data_dir: Path = Path("./data")
    embedding_url: str | None = None
    embedding_model: str | None = None
    embedding_dimensions: int | None = Field(default=None, gt=0)
    embedding_api_key: SecretStr | None = None
    embedding_runtime: Literal["onnx", "torch"] = Field(
        default="onnx", description="the in-process model: ONNX Runtime with int8 weights "
        "(exported once from the packaged weights), or PyTorch",
    )
    model_cache: Path | None = Field(
        default=None, description="where exported models are kept; unset: "
        "$XDG_CACHE_HOME/kb/models",
    )
    tokenizer: str | None = None
    query_instruction: str | None = None
    store: Literal["chroma", "milvus"] = Field(
        default="chroma", description="where chunks live: Chroma (with a tantivy index for "
        "keyword search) or Milvus (vectors and BM25 in one collection)",
    )
    chroma_url: str | None = None
    milvus_uri: str | None = Field(
        default=None, description="a Milvus server or cluster (http://host:19530), or a folder "
        "for milvus-lite (a path ending in .db); unset: KB_DATA_DIR/milvus.db",
    )
    milvus_token: SecretStr | None = Field(
        default=None, description="Milvus credentials, user:password or an API key"
    )
    llm_url: str | None = None
    llm_model: str | None = None
    llm_api_key: SecretStr | None = None
    min_score: float = Field(
        default=0.25, ge=-1, le=1, description="hits below this similarity do not answer"
    )
    api_key: SecretStr | None = None
    access_log: bool = Field(
        default=False, description="log every HTTP request (uvicorn's access log, about "
        "0.2 ms a request); off, GET /metrics still counts and times them by route",
    )
    dense_weight: float = Field(
        default=0.4, ge=0, le=1, description="hybrid search: weight of the dense leg"
    )
    uncovered_dense_weight: float = Field(
        default=0.1, ge=0, le=1,
        description="the dense weight for queries in scripts the embedding model does not know",
    )
    embedding_scripts: str | None = Field(
        default=None, pattern=r"^(all|(latin|cjk|other)(,(latin|cjk|other))*)$",
        description="scripts the embedding model knows: all, or e.g. latin,cjk; unset: "
        "latin for the packaged English-only model, all for any other",
    )
    rerank_url: str | None = None
    rerank_model: str | None = None
    rerank_api_key: SecretStr | None = None
    rerank_top_n: int = Field(default=30, ge=1, le=200, description="candidates reranked")
    rerank_timeout: float = Field(default=10.0, gt=0, description="seconds per rerank call")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    chunk_tokens: int = Field(default=256, ge=16, description="chunk size in model tokens")
    chunk_overlap: int = Field(default=32, ge=0)
    dense_piece_tokens: int | None = Field(
        default=None, ge=0, description="embed each chunk as pieces of at most this many "
        "tokens, scored by the best (0: one vector per chunk); unset: 128 for the packaged "
        "model (what it was trained on), 0 for any other; Chroma store only",
    )
    embed_batch_size: int = Field(
        default=256, ge=1, description="chunks per embedding call; larger pads less"
    )
    max_file_mb: float = Field(default=256, gt=0)
    max_upload_mb: float = Field(
        default=2048, gt=0, description="one multipart upload to /v1/documents, all files"
    )
    max_upload_files: int = Field(default=1000, gt=0, description="files in one upload")
    max_request_mb: float = Field(default=8, gt=0, description="a JSON request body")
    max_docx_uncompressed_mb: float = Field(default=512, gt=0)
    max_docx_elements: int = Field(
        default=2_000_000, gt=0, description="XML elements in a DOCX (element-bomb guard)"
    )
    max_docx_depth: int = Field(default=100, gt=0, description="XML nesting depth in a DOCX")
    parse_workers: int | None = Field(
        default=None, gt=0, description="parser processes; unset: one per core"
    )
    parse_cpu_seconds: int = Field(
        default=120, gt=0, description="CPU time one file may take to parse"
    )
    parse_memory_mb: int = Field(
        default=3072, ge=256, description="memory a parser process may use"
    )
    max_pages: int = Field(default=5000, gt=0)
    max_chars: int = Field(default=300_000_000, gt=0)
    ocr: Literal["auto", "rapidocr", "tesseract", "off"] = Field(
        default="auto", description="OCR engine for scanned pages and images (auto: RapidOCR "
        "for Chinese, Tesseract for Latin script when installed)",
    )
    ocr_languages: str = Field(
        default="chi_sim,eng", description="Tesseract language data to read with, comma-separated"
    )
    ocr_max_pages: int = Field(default=500, gt=0, description="most pages of a file to OCR")
    ocr_page_seconds: int = Field(default=60, gt=0, description="CPU time to OCR one page")
    ocr_dpi: int = Field(default=300, ge=72, le=600, description="resolution scans are read at")

    insecure_no_auth: bool = Field(
        default=False,
        description="let `kb serve` listen beyond localhost without KB_API_KEY (anyone who "
        "reaches it may read every user's documents)",
    )
    share_admin_uploads: bool = Field(
        default=False, description="Open WebUI admins' uploads are shared, not private"
    )
    webui_venv: Path = Field(
        default=Path("~/.cache/kb/openwebui-venv"), description="where `kb webui` finds Open WebUI"
    )
    webui_url: str | None = Field(
        default=None, description="Open WebUI's address, so kb follows deletions made there"
    )
    webui_api_key: SecretStr | None = Field(
        default=None, description="an Open WebUI admin's API key (or give the admin's e-mail "
        "and password)",
    )
    webui_admin_email: str | None = None
    webui_admin_password: SecretStr | None = None
    webui_reconcile_minutes: float = Field(
        default=10, gt=0, description="how often kb checks Open WebUI for deletions it missed"
    )

    @field_validator(
        "embedding_url", "embedding_model", "query_instruction", "chroma_url", "llm_url",
        "llm_model", "embedding_dimensions", "api_key", "embedding_api_key", "tokenizer",
        "llm_api_key", "rerank_url", "rerank_model", "rerank_api_key", "embedding_scripts",
        "model_cache", "milvus_uri", "milvus_token", "webui_url", "webui_api_key",
        "webui_admin_email", "webui_admin_password",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """An empty variable (``KB_X=``) means unset, as in docker-compose files."""
        return None if value == "" else value

    def piece_tokens(self, model_name: str) -> int:
        """The dense piece size (0: off); see ``dense_piece_tokens``."""
        if self.dense_piece_tokens is not None:
            return self.dense_piece_tokens
        return DEFAULT_PIECE_TOKENS if model_name == DEFAULT_MODEL else 0

    def covered_scripts(self, model_name: str) -> frozenset[str] | None:
        """What the embedding model knows (``None``: every script); see ``embedding_scripts``."""
        scripts = self.embedding_scripts or ("latin" if model_name == DEFAULT_MODEL else "all")
        return None if scripts == "all" else frozenset(scripts.split(","))

    @property
    def ocr_settings(self) -> OcrSettings:
        """The OCR engine and budgets, as the parser workers take them."""
        languages = tuple(lang.strip() for lang in self.ocr_languages.split(",") if lang.strip())
        return OcrSettings(self.ocr, languages or ("eng",), self.ocr_max_pages,
                           self.ocr_page_seconds, self.ocr_dpi)

    @property
    def max_file_bytes(self) -> int:
        """Largest accepted file, in bytes."""
        return int(self.max_file_mb * MB)
