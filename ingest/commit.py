"""How a finished document becomes visible: the two ``Committer`` strategies.

``CatalogCommitter`` is normal ingest, following the intent protocol of
``ingest.catalog``; ``CollectingCommitter`` is re-indexing, where the catalog
changes only when the new collection is switched in.
"""

from __future__ import annotations

from ingest.catalog import INDEXED, Catalog, Document
from ingest.pipeline import ADDED, UPDATED
from retrieval.stores import VectorStore


class CatalogCommitter:
    """Normal ingest: the intent protocol of ``ingest.catalog``."""

    def __init__(self, catalog: Catalog, store: VectorStore) -> None:
        self.catalog, self.store = catalog, store
        self._replaced: list[tuple[str, int]] = []

    def generation(self, document_id: str) -> int:
        """A fresh generation, so old chunks stay searchable until the swap."""
        return self.catalog.next_generation(document_id)

    def begin(self, doc: Document) -> None:
        """Record the intent before any vector is written."""
        self.catalog.intend(doc.id, doc.generation)

    def commit(self, doc: Document) -> str:
        """Swap the catalog row; the replaced generation stays an intent until ``settle``."""
        replaced = self.catalog.commit(doc)
        if replaced is None:
            return ADDED
        if replaced != doc.generation:
            self._replaced.append((doc.id, replaced))
        return UPDATED

    def settle(self) -> None:
        """Delete the replaced generations in one store call, then drop their intents."""
        if self._replaced:
            self.store.delete_many(self._replaced)
            for document_id, generation in self._replaced:
                self.catalog.done(document_id, generation)
            self._replaced.clear()

    def abort(self, doc: Document) -> None:
        """Delete the new generation's vectors and the intent, unless it was committed
        (a Ctrl-C can land between the catalog's commit and the pipeline's record of it)."""
        current = self.catalog.get(doc.id)
        if current and current.status == INDEXED and current.generation == doc.generation:
            return
        self.store.delete(doc.id, doc.generation)
        self.catalog.done(doc.id, doc.generation)


class CollectingCommitter:
    """Re-index: chunks keep their generation; the catalog changes only at the switch."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.docs: list[Document] = []

    def generation(self, document_id: str) -> int:
        """The document's current generation, so search filters keep working after the switch."""
        doc = self.catalog.get(document_id)
        return doc.generation if doc else 1

    def begin(self, doc: Document) -> None:
        """Nothing to record: a failed re-index drops the whole new collection."""

    def commit(self, doc: Document) -> str:
        """Remember the document's new chunk count and fingerprint."""
        self.docs.append(doc)
        return UPDATED

    def settle(self) -> None:
        """Nothing was replaced in the new collection."""

    def abort(self, doc: Document) -> None:
        """Nothing to undo per document (see ``begin``)."""
