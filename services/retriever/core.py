"""The retriever's work as pure functions over a `VectorStore`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from shared.jobs import Chunk


class VectorStore(Protocol):
    def search(self, collection: str, vector: Sequence[float], top_k: int) -> list[Chunk]: ...


def retrieve(store: VectorStore, collection: str, vector: Sequence[float], top_k: int,
             threshold: float) -> list[Chunk]:
    """The top_k chunks, best first, without those below the relevance threshold."""
    hits = store.search(collection, vector, top_k)
    return sorted((c for c in hits if c.score >= threshold), key=lambda c: -c.score)[:top_k]
