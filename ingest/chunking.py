"""Chunking: segments of extracted text into token-sized, overlapping chunks.

Sizes are counted in the embedding model's own tokens, so a chunk never
exceeds what the model accepts. Chunks never cross a segment, and so never
cross a PDF page: every chunk's page is exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from langchain_text_splitters import RecursiveCharacterTextSplitter

from retrieval.types import Chunk, Segment

# Paragraphs, lines, sentences, clauses, words, then characters as a last resort.
SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""]
MAX_TITLE_CHARS = 120


@dataclass(frozen=True)
class ChunkSettings:
    """How documents are cut; part of every document's fingerprint."""

    tokens: int = 256
    overlap: int = 32

    def fitted(self, model_max_tokens: int, special_tokens: int) -> ChunkSettings:
        """These settings capped to what the model accepts."""
        limit = max(16, model_max_tokens - special_tokens)
        tokens = min(self.tokens, limit)
        return ChunkSettings(tokens=tokens, overlap=min(self.overlap, tokens // 4))


class Chunker:
    """Splits segments with langchain's recursive splitter, sized in model tokens."""

    def __init__(self, settings: ChunkSettings, count_tokens: Callable[[str], int]) -> None:
        self.settings = settings
        self._count = count_tokens
        self._shorter: dict[int, Chunker] = {}
        self._splitter = RecursiveCharacterTextSplitter(
            chunk_size=settings.tokens,
            chunk_overlap=settings.overlap,
            length_function=count_tokens,
            separators=SEPARATORS,
            keep_separator="end",
        )

    def split(self, text: str) -> Iterator[tuple[int, str]]:
        """(start offset, chunk text) pairs for one piece of text.

        Offsets are found here: langchain's ``add_start_index`` subtracts the
        overlap as characters, which is wrong when sizes are in tokens.
        """
        start = -1
        for piece in self._splitter.split_text(text):
            if piece.strip():
                start = text.find(piece, start + 1)
                yield start, piece

    def chunks(
        self, segments: Iterable[Segment], *, document_id: str, source: str, generation: int,
        owner: str | None = None,
    ) -> Iterator[Chunk]:
        """Chunks of a document, numbered in order, with page, section, offsets and title."""
        index = 0
        title: str | None = None
        splitter = self
        for segment in segments:
            if index == 0 and title is None:
                title = document_title(segment.text)
                splitter = self._leaving_room_for(title)
            for start, text in splitter.split(segment.text):
                begin = segment.offset + start
                yield Chunk(
                    document_id=document_id,
                    source=source,
                    chunk_index=index,
                    text=text,
                    start=begin,
                    end=begin + len(text),
                    page=segment.page,
                    section=segment.section,
                    generation=generation,
                    ocr=segment.ocr,
                    owner=owner,
                    title=title,
                )
                index += 1

    def _leaving_room_for(self, title: str | None) -> Chunker:
        """A chunker whose chunks still fit the model with ``title`` in front (see indexed_text)."""
        if not title:
            return self
        room = self._count(title) + 1
        tokens = max(16, self.settings.tokens - room)
        if tokens not in self._shorter:
            settings = ChunkSettings(tokens, min(self.settings.overlap, tokens // 4))
            self._shorter[tokens] = Chunker(settings, self._count)
        return self._shorter[tokens]


def document_title(text: str) -> str | None:
    """The first line of a document, when it is short enough to be its title."""
    first, _, rest = text.strip().partition("\n")
    title = first.strip().lstrip("#").strip()
    if rest.strip() and 0 < len(title) <= MAX_TITLE_CHARS:
        return title
    return None
