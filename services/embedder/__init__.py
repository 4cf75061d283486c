"""Embedder worker: sentence-transformers embeddings for questions and document chunks."""
