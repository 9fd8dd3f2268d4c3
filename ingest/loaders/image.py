"""Images as documents: PNG, JPEG and TIFF (each frame a page) read by OCR."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from ingest.loaders.pdf import PAGE_SEPARATOR, normalise_page
from ingest.loaders.text import split_text
from ingest.ocr import MAX_SIDE, Reader
from retrieval.errors import ExtractionFailed, LimitExceeded
from retrieval.types import Segment

if TYPE_CHECKING:
    from ingest.loaders import Limits

MAX_PIXELS = 150_000_000  # per frame: a 12,000 × 12,000 scan; a decompression bomb is more


def load_image(stream: BinaryIO, limits: Limits, reader: Reader) -> Iterator[Segment]:
    """Stream an image's text, one page per frame, as OCR reads it."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = None  # checked below, per frame, with a message of our own
    try:
        image = Image.open(stream)
        frames = getattr(image, "n_frames", 1)
    except (UnidentifiedImageError, OSError, EOFError, SyntaxError, ValueError) as exc:
        # The file itself was opened by the caller: PIL reports bad data as OSError too.
        raise ExtractionFailed(
            f"damaged image: it cannot be read ({exc}); open it in an image viewer and save "
            "it again as PNG or JPEG"
        ) from exc
    if frames > limits.max_pages:
        raise LimitExceeded(
            f"image has {frames} pages, over the limit of {limits.max_pages}; split it"
        )
    if frames > reader.settings.max_pages and reader.settings.enabled:
        raise reader.settings.pages_error(frames)
    reader.counts.pages = frames
    offset = 0
    for number in range(1, frames + 1):
        try:
            image.seek(number - 1)
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise LimitExceeded(
                    f"page {number} is {width} × {height} pixels, over the limit of "
                    f"{MAX_PIXELS // 1_000_000} million; scale it down or split it"
                )
            image.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at a fraction of the size
            page = ImageOps.exif_transpose(image)  # a phone photo taken sideways stands up
            page.load()
        except (OSError, EOFError, ValueError, SyntaxError) as exc:
            raise ExtractionFailed(
                f"damaged image: page {number} cannot be decoded ({exc}); open it in an image "
                "viewer and save it again"
            ) from exc
        text = normalise_page(reader.read(page, number))
        if not text:
            reader.counts.blank += 1
        for piece in split_text(text):
            if offset:
                offset += len(PAGE_SEPARATOR)
            yield Segment(piece, offset, page=number, ocr=True)
            offset += len(piece)
    if not offset:
        raise ExtractionFailed(
            "no extractable text: OCR found no text in the image"
            f"{'' if frames == 1 else f' ({frames} pages)'} (blank, too small or too blurred "
            "to read); check that it is the right file, or photograph it closer"
        )
