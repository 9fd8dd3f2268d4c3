"""Streaming multipart uploads: each file goes straight to disk, its size checked as it arrives.

Starlette's own form parser spools the whole body before the handler runs,
so an oversized upload would be read in full before being refused; this
parser stops at the first byte over the limit.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from fastapi import HTTPException
from python_multipart.multipart import MultipartParser, parse_options_header

from app.settings import MB


class UploadTooLarge(Exception):
    """A file in the upload is over the size limit."""


class BadUpload(Exception):
    """The request is not a usable multipart upload."""


@dataclass
class UploadedFile:
    """A file received to a temporary path."""

    filename: str
    path: Path
    size: int


@dataclass
class _Receiver:
    folder: Path
    max_bytes: int
    max_files: int
    files: list[UploadedFile] = field(default_factory=list)
    headers: dict[bytes, bytes] = field(default_factory=dict)
    _field: bytes = b""
    _value: bytes = b""
    _out: IO[bytes] | None = None
    _current: UploadedFile | None = None

    def callbacks(self) -> Any:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": lambda d, s, e: setattr(self, "_field", self._field + d[s:e]),
            "on_header_value": lambda d, s, e: setattr(self, "_value", self._value + d[s:e]),
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
        }

    def part_begin(self) -> None:
        self.headers, self._current = {}, None

    def header_end(self) -> None:
        self.headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def headers_finished(self) -> None:
        _, params = parse_options_header(self.headers.get(b"content-disposition", b""))
        name = params.get(b"filename")
        if params.get(b"name") != b"files" or name is None:
            return  # other form fields are ignored
        filename = Path(name.decode("utf-8", "replace").replace("\\", "/")).name
        if not filename:
            raise BadUpload("a file in the upload has no file name")
        if len(self.files) >= self.max_files:
            raise UploadTooLarge(
                f"more than {self.max_files} files in one upload (KB_MAX_UPLOAD_FILES); "
                "send them in several uploads"
            )
        handle = tempfile.NamedTemporaryFile(dir=self.folder, prefix="upload-", delete=False)
        self._out = handle
        self._current = UploadedFile(filename, Path(handle.name), 0)
        self.files.append(self._current)

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current is None or self._out is None:
            return
        self._current.size += end - start
        if self._current.size > self.max_bytes:
            raise UploadTooLarge(
                f"{self._current.filename} is over the upload limit of "
                f"{self.max_bytes / MB:.0f} MB (KB_MAX_FILE_MB)"
            )
        self._out.write(data[start:end])

    def part_end(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def discard(self) -> None:
        self.part_end()
        for f in self.files:
            f.path.unlink(missing_ok=True)


async def receive_files(
    content_type: str, body: AsyncIterator[bytes], folder: Path, max_bytes: int,
    max_files: int,
) -> list[UploadedFile]:
    """Write every ``files`` part of a multipart body to ``folder``; raise on any problem."""
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data" or b"boundary" not in params:
        raise BadUpload("send the documents as multipart/form-data in a field named 'files'")
    folder.mkdir(parents=True, exist_ok=True)
    receiver = _Receiver(folder, max_bytes, max_files)
    parser = MultipartParser(params[b"boundary"], receiver.callbacks())
    try:
        async for chunk in body:
            parser.write(chunk)
        parser.finalize()
    except (UploadTooLarge, BadUpload, HTTPException):  # ours, or the body limit's
        receiver.discard()
        raise
    except Exception as exc:  # python-multipart's parse errors
        receiver.discard()
        raise BadUpload(f"malformed multipart body: {exc}") from exc
    if not receiver.files:
        raise BadUpload("no files in the upload: use the multipart field name 'files'")
    return receiver.files
