"""Retriever worker: searches Milvus for the top chunks and keeps the index up to date."""
