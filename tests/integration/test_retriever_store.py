"""services/retriever/store.py over Milvus Lite: the configured index, and a document that
replaces its own chunks (each write flushed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from services.retriever.store import Index, MilvusStore
from shared.jobs import IndexedChunk

pytestmark = pytest.mark.integration


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MilvusStore]:
    store = MilvusStore(str(tmp_path / "milvus.db"),
                        index=Index("HNSW", {"M": 8, "efConstruction": 64}, {"ef": 32}))
    yield store
    store.client.close()


def _chunks(rng: np.random.Generator, n: int, tag: str) -> list[IndexedChunk]:
    rows = rng.standard_normal((n, 16))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return [IndexedChunk(chunk_id=f"{i:05d}", text=f"{tag} {i}", vector=r.tolist())
            for i, r in enumerate(rows)]


def test_store_builds_the_configured_index_and_replaces_a_documents_chunks(
        store: MilvusStore) -> None:
    rng = np.random.default_rng(1)
    first = _chunks(rng, 30, "old")
    assert store.is_lite
    store.replace_document("kb", "owner:doc", "doc", "doc.md", first)
    index = store.client.describe_index("kb", "vector")
    assert index["index_type"] == "HNSW"
    hit = store.search("kb", first[3].vector, 1)[0]
    assert (hit.chunk_id, hit.text) == ("00003", "old 3")

    second = _chunks(rng, 10, "new")
    store.replace_document("kb", "owner:doc", "doc", "doc.md", second)
    hits = store.search("kb", first[3].vector, 40)
    assert {h.text.split()[0] for h in hits} == {"new"} and len(hits) == 10
    store.delete_document(["kb"], "owner:doc")
    assert store.search("kb", second[0].vector, 5) == []
