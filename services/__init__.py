"""The ragmesh services: api, embedder, retriever, generator."""
