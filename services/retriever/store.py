"""The vector store: one Milvus collection per knowledge base, chunks keyed by document."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from services.retriever import retry
from shared.jobs import Chunk, IndexedChunk
from shared.logging import get_logger

log = get_logger(__name__)
T = TypeVar("T")

_FIELDS = ["doc_key", "document_id", "chunk_id", "source", "text"]
_MAX_TEXT_BYTES = 65535
# Milvus' "collection not loaded": a restarted server has every collection released.
_NOT_LOADED = 101
_CONNECT_FAILED = 2


def transient(exc: BaseException) -> bool:
    """Whether `exc` says the server is away or just came back (worth trying again)."""
    import grpc  # noqa: PLC0415 (pymilvus' own dependency)
    from pymilvus.exceptions import (  # noqa: PLC0415
        ConnectError,
        MilvusException,
        MilvusUnavailableException,
    )

    if isinstance(exc, (ConnectError, MilvusUnavailableException, ConnectionError)):
        return True
    if isinstance(exc, grpc.RpcError):
        return exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    return isinstance(exc, MilvusException) and exc.code in (_CONNECT_FAILED, _NOT_LOADED)


def _quote(value: str) -> str:
    # Ids are validated against a strict pattern upstream; escape anyway, defence in depth.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class MilvusStore:
    """pymilvus' MilvusClient behind the few operations ragmesh needs.

    `uri` is a Milvus server (http://host:19530) or a Milvus Lite file (*.db). While the
    server is away (restarting) each operation is tried again for up to `retry_s` seconds,
    then raises `retry.VectorStoreUnavailable`.
    """

    def __init__(self, uri: str, token: str | None = None, retry_s: float = 30.0) -> None:
        from pymilvus import MilvusClient  # noqa: PLC0415 (heavy import)

        if "://" not in uri:  # Milvus Lite wants the folder of its file to exist
            Path(uri).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        self.client = MilvusClient(uri=uri, token=token or "")
        self.retry_s = retry_s
        self._ready: set[str] = set()
        self._lock = threading.Lock()

    def _retrying(self, op: Callable[[], T]) -> T:
        def again(exc: BaseException) -> None:
            log.warning("vectorstore_retry", error=f"{type(exc).__name__}: {exc}"[:300])
            # A server that restarted has released every collection: load them again.
            self._ready.clear()

        return retry.call(op, is_transient=transient, give_up_after_s=self.retry_s,
                          on_retry=again)

    def ping(self, timeout_s: float = 3.0) -> None:
        self.client.list_collections(timeout=timeout_s)

    def _ensure(self, collection: str, dim: int) -> None:
        """Create and load the collection on first use (a collection must be loaded to search)."""
        if collection in self._ready:
            return
        with self._lock:
            if not self.client.has_collection(collection):
                self._create(collection, dim)
            self.client.load_collection(collection)
            self._ready.add(collection)

    def _create(self, collection: str, dim: int) -> None:
        from pymilvus import DataType  # noqa: PLC0415

        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=512)
        schema.add_field("doc_key", DataType.VARCHAR, max_length=256)
        schema.add_field("document_id", DataType.VARCHAR, max_length=256)
        schema.add_field("chunk_id", DataType.VARCHAR, max_length=64)
        schema.add_field("source", DataType.VARCHAR, max_length=2048)
        schema.add_field("text", DataType.VARCHAR, max_length=_MAX_TEXT_BYTES)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        index = self.client.prepare_index_params()
        index.add_index(field_name="vector", index_type="AUTOINDEX", metric_type="COSINE")
        self.client.create_collection(collection, schema=schema, index_params=index)

    def exists(self, collection: str) -> bool:
        return collection in self._ready or bool(self.client.has_collection(collection))

    def replace_document(self, collection: str, doc_key: str, document_id: str, source: str,
                         chunks: Sequence[IndexedChunk]) -> int:
        """Delete the document's old chunks, then insert the new ones: no duplicates (a retry
        deletes what a failed try may have written)."""
        return self._retrying(lambda: self._replace(collection, doc_key, document_id, source,
                                                    chunks))

    def _replace(self, collection: str, doc_key: str, document_id: str, source: str,
                 chunks: Sequence[IndexedChunk]) -> int:
        if not chunks:
            self._delete([collection], doc_key)
            return 0
        self._ensure(collection, len(chunks[0].vector))
        self._delete([collection], doc_key)
        rows = [{"id": f"{doc_key}#{c.chunk_id}", "doc_key": doc_key, "document_id": document_id,
                 "chunk_id": c.chunk_id, "source": source, "text": c.text, "vector": c.vector}
                for c in chunks]
        self.client.insert(collection, rows)
        return len(rows)

    def delete_document(self, collections: Sequence[str], doc_key: str) -> None:
        self._retrying(lambda: self._delete(collections, doc_key))

    def _delete(self, collections: Sequence[str], doc_key: str) -> None:
        for collection in collections:
            if self.exists(collection):
                self.client.delete(collection, filter=f"doc_key == {_quote(doc_key)}")

    def search(self, collection: str, vector: Sequence[float], top_k: int) -> list[Chunk]:
        return self._retrying(lambda: self._search(collection, vector, top_k))

    def _search(self, collection: str, vector: Sequence[float], top_k: int) -> list[Chunk]:
        if not self.exists(collection):
            return []
        self._ensure(collection, len(vector))
        hits: list[list[dict[str, Any]]] = self.client.search(
            collection, data=[list(vector)], limit=top_k, output_fields=_FIELDS,
            search_params={"metric_type": "COSINE"})
        return [Chunk(document_id=h["entity"]["document_id"], chunk_id=h["entity"]["chunk_id"],
                      source=h["entity"]["source"], text=h["entity"]["text"],
                      score=float(h["distance"])) for h in (hits[0] if hits else [])]
