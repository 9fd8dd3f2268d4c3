"""Upload, list, read and delete documents."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from app.deps import JobsDep, KbDep, SettingsDep
from app.routers.jobs import JobView
from app.uploads import BadUpload, UploadTooLarge, receive_files
from ingest.catalog import Document

router = APIRouter(prefix="/v1", tags=["documents"])


class DocumentView(BaseModel):
    """A document in the catalog."""

    id: str
    source: str
    type: str
    size: int
    status: str
    error: str | None
    chunks: int
    owner: str | None = None  # the Open WebUI user it is private to; None = shared
    created_at: float
    updated_at: float
    pages: int | None = Field(None, description="pages of a PDF or image; null for others")
    ocr_pages: int = Field(0, description="pages read by OCR (scanned, no text layer)")
    blank_pages: int = Field(0, description="pages with no text at all, even after OCR")

    @classmethod
    def of(cls, doc: Document) -> DocumentView:
        """From a catalog row."""
        return cls.model_validate(doc, from_attributes=True)


class DocumentList(BaseModel):
    """All documents."""

    documents: list[DocumentView]


@router.post("/documents", status_code=status.HTTP_202_ACCEPTED)
async def upload(request: Request, kb: KbDep, jobs: JobsDep, settings: SettingsDep) -> JSONResponse:
    """Upload one or more files (multipart field ``files``); they are ingested in a background job.

    A file with the same name as an earlier upload replaces it. Poll the returned job.
    """
    folder = kb.uploads_dir
    try:
        files = await receive_files(
            request.headers.get("content-type", ""), request.stream(), folder,
            settings.max_file_bytes, settings.max_upload_files,
        )
    except UploadTooLarge as exc:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, str(exc)) from exc
    except BadUpload as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    sources = [kb.upload_source("upload", f.filename, f.filename, f.path, None) for f in files]
    job = jobs.ingest(sources, cleanup=[f.path for f in files])
    view = JobView.of(job)
    return JSONResponse(
        view.model_dump(), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"}
    )


@router.get("/documents")
def list_documents(kb: KbDep) -> DocumentList:
    """Every document with its status (indexed, or failed with the reason)."""
    return DocumentList(documents=[DocumentView.of(d) for d in kb.documents()])


@router.get("/documents/{document_id}")
def get_document(document_id: str, kb: KbDep) -> DocumentView:
    """One document by id."""
    return DocumentView.of(kb.document(document_id))


@router.delete("/documents/{document_id}")
def delete_document(document_id: str, kb: KbDep) -> DocumentView:
    """Delete a document and all its vectors."""
    kb.document(document_id)  # 404 unless it exists; then remove by id alone
    return DocumentView.of(kb.remove(document_id)[0])
