"""Embedders, the vector store, search and answering."""
