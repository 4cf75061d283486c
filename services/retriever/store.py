"""The vector store: one Milvus collection per knowledge base, chunks keyed by document."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from services.retriever import lite, retry
from shared.jobs import Chunk, IndexedChunk
from shared.logging import get_logger
from shared.settings import Settings

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


@dataclass(frozen=True)
class Index:
    """The vector index of new collections and the parameters of every search
    (settings.vectorstore_*; the defaults build Milvus Lite's AUTOINDEX graph, made explicit
    so that Milvus standalone builds and searches the same HNSW, with a wider search)."""

    type: str = "HNSW"
    params: Mapping[str, Any] = field(default_factory=lambda: {"M": 16, "efConstruction": 200})
    search_params: Mapping[str, Any] = field(default_factory=lambda: {"ef": 128})

    @classmethod
    def from_settings(cls, settings: Settings) -> Index:
        return cls(settings.vectorstore_index_type, settings.vectorstore_index_params,
                   settings.vectorstore_search_params)

    def search(self, top_k: int) -> dict[str, Any]:
        params = dict(self.search_params)
        if "ef" in params:  # HNSW cannot return more than ef hits
            params["ef"] = max(int(params["ef"]), top_k)
        return params


def _doc_filter(doc_key: str) -> str:
    return f"doc_key == {_quote(doc_key)}"


class MilvusStore:
    """pymilvus' MilvusClient behind the few operations ragmesh needs.

    `uri` is a Milvus server (http://host:19530) or a Milvus Lite file (*.db). While the
    server is away (restarting) each operation is tried again for up to `retry_s` seconds,
    then raises `retry.VectorStoreUnavailable`.
    """

    def __init__(self, uri: str, token: str | None = None, index: Index | None = None,
                 retry_s: float = 30.0) -> None:
        from pymilvus import MilvusClient  # noqa: PLC0415 (heavy import)

        if "://" not in uri:  # pymilvus runs Milvus Lite over the file in this process
            Path(uri).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
            lite.install()
        self.client = MilvusClient(uri=uri, token=token or "")
        # Milvus Lite searches rows written since its last flush by converting each one to
        # Python, every search, and deletes by filter the same way: at 20,000 such rows a
        # search takes over a second (bench/retrieval.py). So on Milvus Lite every write is
        # flushed, which also gets the rows indexed. Milvus itself seals and indexes
        # segments on its own, and a flush per write would only leave it small segments.
        self.is_lite = str(self.client.get_server_version()).startswith("milvus_lite")
        self.index = index or Index()
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
        index.add_index(field_name="vector", index_type=self.index.type, metric_type="COSINE",
                        params=dict(self.index.params))
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
        self.client.delete(collection, filter=_doc_filter(doc_key))
        rows = [{"id": f"{doc_key}#{c.chunk_id}", "doc_key": doc_key, "document_id": document_id,
                 "chunk_id": c.chunk_id, "source": source, "text": c.text, "vector": c.vector}
                for c in chunks]
        self.client.insert(collection, rows)
        self._flush(collection)
        return len(rows)

    def delete_document(self, collections: Sequence[str], doc_key: str) -> None:
        self._retrying(lambda: self._delete(collections, doc_key))

    def _delete(self, collections: Sequence[str], doc_key: str) -> None:
        for collection in collections:
            if self.exists(collection):
                self.client.delete(collection, filter=_doc_filter(doc_key))
                self._flush(collection)

    def _flush(self, collection: str) -> None:
        if self.is_lite:
            self.client.flush(collection)

    def search(self, collection: str, vector: Sequence[float], top_k: int) -> list[Chunk]:
        return self._retrying(lambda: self._search(collection, vector, top_k))

    def _search(self, collection: str, vector: Sequence[float], top_k: int) -> list[Chunk]:
        if not self.exists(collection):
            return []
        self._ensure(collection, len(vector))
        hits: list[list[dict[str, Any]]] = self.client.search(
            collection, data=[list(vector)], limit=top_k, output_fields=_FIELDS,
            search_params={"metric_type": "COSINE", "params": self.index.search(top_k)})
        return [Chunk(document_id=h["entity"]["document_id"], chunk_id=h["entity"]["chunk_id"],
                      source=h["entity"]["source"], text=h["entity"]["text"],
                      score=float(h["distance"])) for h in (hits[0] if hits else [])]
