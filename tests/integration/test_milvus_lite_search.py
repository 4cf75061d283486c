"""services/retriever/lite.py: the cached search path answers exactly as Milvus Lite's own,
over random inserts, re-inserts of the same keys, deletes, flushes and compactions."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.retriever import lite

pytestmark = pytest.mark.integration

DIM = 8


@pytest.fixture
def collection(tmp_path: Path):  # type: ignore[no-untyped-def]
    from milvus_lite.db import MilvusLite
    from milvus_lite.schema.types import CollectionSchema, DataType, FieldSchema

    db = MilvusLite(str(tmp_path / "lite"))
    schema = CollectionSchema(fields=[
        FieldSchema("id", DataType.VARCHAR, is_primary=True, max_length=64),
        FieldSchema("doc", DataType.VARCHAR, max_length=64),
        FieldSchema("vector", DataType.FLOAT_VECTOR, dim=DIM)])
    col = db.create_collection("c", schema)
    col.create_index("vector", {"index_type": "HNSW", "metric_type": "COSINE",
                                "params": {"M": 8, "efConstruction": 40}})
    col.load()
    yield col
    db.close()


def _search(fn: Any, col: Any, queries: np.ndarray, **kw: Any) -> list[list[dict[str, Any]]]:
    segments, delta = col._read_snapshot()
    return fn(query_vectors=queries, segments=segments, memtable=col._memtable,
              delta_index=delta, top_k=kw.pop("top_k", 5), metric_type="COSINE", pk_field="id",
              vector_field="vector", search_params={"ef": 64}, **kw)


def _same(col: Any, queries: np.ndarray, **kw: Any) -> None:
    from milvus_lite.search.executor_indexed import execute_search_with_index as original

    expected = _search(original, col, queries, **dict(kw))
    got = _search(lite.execute_search_with_index, col, queries, **dict(kw))
    assert got == expected


def test_cached_search_answers_like_milvus_lite_through_writes_deletes_and_compaction(
        collection: Any) -> None:
    rng = random.Random(6)
    vec = np.random.default_rng(6)
    queries = vec.standard_normal((4, DIM)).astype(np.float32)
    docs: dict[str, int] = {}  # document -> chunks, re-written like MilvusStore.replace_document
    for _ in range(60):
        doc = f"d{rng.randrange(25)}"
        action = rng.random()
        if action < 0.2 and docs:
            gone = rng.choice(sorted(docs))
            collection.delete([f"{gone}#{i}" for i in range(docs.pop(gone))])
        else:
            if doc in docs:
                collection.delete([f"{doc}#{i}" for i in range(docs[doc])])
            docs[doc] = rng.randrange(1, 30)
            rows = vec.standard_normal((docs[doc], DIM)).astype(np.float32)
            collection.insert([{"id": f"{doc}#{i}", "doc": doc, "vector": rows[i].tolist()}
                               for i in range(docs[doc])])
        if rng.random() < 0.5:
            collection.flush()
        # Let compaction and index builds land: one that lands between the two searches
        # would change the other's distances in the last digits (HNSW against NumPy).
        collection._wait_for_bg()
        _same(collection, queries)
        _same(collection, queries[:1], top_k=50, output_fields=["doc"])
        _same(collection, queries[:2], compiled_filter=collection._compile_filter(
            f'doc != "{doc}"'))
    # Re-inserting the same keys without deleting leaves older versions behind: newest wins.
    collection.insert([{"id": "d1#0", "doc": "again", "vector": queries[0].tolist()}])
    _same(collection, queries)
    collection.flush()
    collection._wait_for_bg()
    _same(collection, queries)
    best = _search(lite.execute_search_with_index, collection, queries[:1], top_k=1,
                   output_fields=["doc"])[0][0]
    assert (best["id"], best["entity"]["doc"]) == ("d1#0", "again")


def test_install_replaces_the_search_path_of_the_pinned_version_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from milvus_lite.engine import collection as engine

    monkeypatch.setattr(engine, "execute_search_with_index", engine.execute_search_with_index)
    monkeypatch.setattr(lite, "TESTED", frozenset({"0.0.0"}))
    before = engine.execute_search_with_index
    assert lite.install() is False and engine.execute_search_with_index is before
    monkeypatch.setattr(lite, "TESTED", frozenset({"3.2.2"}))
    assert lite.install() is True
    assert engine.execute_search_with_index is lite.execute_search_with_index
