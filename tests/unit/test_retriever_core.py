"""services/retriever/core.py: retrieve() over a fake vector store."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from services.retriever.core import retrieve
from shared.jobs import Chunk

pytestmark = pytest.mark.unit


def hit(name: str, score: float) -> Chunk:
    return Chunk(document_id=name, chunk_id=f"{name}:0", source=f"{name}.md", text=name,
                 score=score)


class FakeStore:
    def __init__(self, hits: list[Chunk]) -> None:
        self.hits = hits
        self.calls: list[tuple[str, list[float], int]] = []

    def search(self, collection: str, vector: Sequence[float], top_k: int) -> list[Chunk]:
        self.calls.append((collection, list(vector), top_k))
        return list(self.hits)


def test_retrieve_drops_hits_below_threshold_and_sorts_best_first() -> None:
    store = FakeStore([hit("b", 0.4), hit("low", 0.1), hit("a", 0.9), hit("c", 0.3)])
    result = retrieve(store, "handbook", [0.1, 0.2], top_k=4, threshold=0.25)
    assert [c.document_id for c in result] == ["a", "b", "c"]


def test_retrieve_keeps_a_hit_exactly_at_threshold() -> None:
    result = retrieve(FakeStore([hit("edge", 0.25)]), "handbook", [0.0], 4, 0.25)
    assert [c.document_id for c in result] == ["edge"]


def test_retrieve_passes_collection_vector_and_top_k_to_store() -> None:
    store = FakeStore([])
    assert retrieve(store, "hr_docs", (0.5, 0.25), top_k=7, threshold=0.0) == []
    assert store.calls == [("hr_docs", [0.5, 0.25], 7)]


def test_retrieve_returns_at_most_top_k() -> None:
    store = FakeStore([hit(f"d{i}", i / 10) for i in range(10)])
    result = retrieve(store, "handbook", [0.0], top_k=3, threshold=-1.0)
    assert [c.document_id for c in result] == ["d9", "d8", "d7"]


def test_retrieve_with_everything_below_threshold_is_empty() -> None:
    assert retrieve(FakeStore([hit("a", 0.1), hit("b", 0.2)]), "h", [0.0], 4, 0.5) == []
