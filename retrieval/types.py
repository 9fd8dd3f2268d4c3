"""Plain dataclasses shared by ingest and retrieval."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of text from one place in a document, as a loader yields it.

    ``offset`` is the character offset of ``text`` within the document's whole
    extracted text; ``page`` is 1-based (PDF) and ``section`` the nearest
    heading above the text (DOCX, Markdown), when known; ``ocr``: the text was read
    from an image of the page (a scan or a photo), not from a text layer.
    """

    text: str
    offset: int
    page: int | None = None
    section: str | None = None
    ocr: bool = False


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a document sized for the embedding model."""

    document_id: str
    source: str
    chunk_index: int
    text: str
    start: int
    end: int
    page: int | None = None
    section: str | None = None
    generation: int = 1
    owner: str | None = None  # who may see it; None = shared with everyone
    title: str | None = None  # the document's title, when it has one
    ocr: bool = False  # read by OCR from a scanned page or an image

    @property
    def id(self) -> str:
        """Store id: unique per document, generation and position."""
        return f"{self.document_id}:{self.generation}:{self.chunk_index}"

    @property
    def indexed_text(self) -> str:
        """What is embedded and indexed: the text with its title and section in front.

        A chunk from the middle of a document says little about what the
        document is about; its title and heading do. Display and citations
        use ``text`` alone.
        """
        context = [p for p in (self.title, self.section) if p and not self.text.startswith(p)]
        return "\n".join([*dict.fromkeys(context), self.text])


@dataclass(frozen=True, slots=True)
class Hit:
    """A search result: a chunk and its score (higher is better).

    ``scores`` and ``ranks`` say how each stage (dense, lexical, rerank) saw
    the chunk; ``score`` is the final one that ordered the results.
    """

    document_id: str
    source: str
    chunk_index: int
    text: str
    score: float
    page: int | None = None
    section: str | None = None
    generation: int = 1
    scores: dict[str, float] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)
    ocr: bool = False

    @property
    def id(self) -> str:
        """The chunk's store id (see ``Chunk.id``)."""
        return f"{self.document_id}:{self.generation}:{self.chunk_index}"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A match known by its chunk id and score alone: what liveness checks and fusion
    need. Its text and source are read only if it makes the results (``Hit``)."""

    document_id: str
    generation: int
    chunk_index: int
    score: float
    scores: dict[str, float] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, chunk_id: str, score: float) -> Candidate:
        """The candidate for a store id (``document:generation:index``)."""
        document_id, generation, index = chunk_id.rsplit(":", 2)
        return cls(document_id, int(generation), int(index), score)

    @property
    def id(self) -> str:
        """The chunk's store id (see ``Chunk.id``)."""
        return f"{self.document_id}:{self.generation}:{self.chunk_index}"


@dataclass(frozen=True)
class Scope:
    """Which chunks a search may return.

    ``owners``: those of documents these owners uploaded (``""`` stands for the
    shared documents, which have none); ``None``: every document. ``documents``:
    these documents too, whoever owns them, granted by name (the files of a
    knowledge base the asker picked or may read in Open WebUI).
    """

    owners: tuple[str, ...] | None = None
    documents: frozenset[str] = frozenset()

    @property
    def nothing(self) -> bool:
        """Whether no chunk can be in scope."""
        return self.owners == () and not self.documents


class Results(list[Hit]):
    """Hits, best first, with warnings about optional stages that were skipped."""

    def __init__(self, hits: list[Hit] | None = None, warnings: list[str] | None = None) -> None:
        super().__init__(hits or [])
        self.warnings: list[str] = warnings or []
