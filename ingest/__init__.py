"""Loaders, chunking, the catalog and the ingest pipeline."""
