"""The retriever's store against a real Milvus Lite server that is killed and started again
on its port over its data: what was indexed is still there, the store reloads its collections
and searches again; a server that stays away ends in vectorstore_unavailable."""

from __future__ import annotations

import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ragmesh.procs import Proc, free_port, wait_until
from services.retriever import tasks
from services.retriever.retry import VectorStoreUnavailable
from services.retriever.store import MilvusStore
from shared.jobs import IndexedChunk, QueryParams, RetrieveJob
from shared.records import QueryRecords, owner_of
from tests.conftest import KEY_A

pytestmark = pytest.mark.integration

VECTORS = {"leave": [1.0, 0.0, 0.0, 0.0], "hotel": [0.0, 1.0, 0.0, 0.0]}


def _open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def milvus(tmp_path: Path) -> Iterator[tuple[str, Callable[[], Proc]]]:
    """(uri, start): a Milvus Lite server on one port and data folder; start() (again)."""
    port, procs = free_port(), []
    argv = [sys.executable, "-m", "milvus_lite", "server", "--data-dir",
            str(tmp_path / "milvus.db"), "--host", "127.0.0.1", "--port", str(port)]

    def start() -> Proc:
        proc = Proc("milvus", argv, tmp_path / "milvus.log").start()
        procs.append(proc)
        wait_until(lambda: _open(port), 60, "milvus lite", [proc])
        return proc

    yield f"http://127.0.0.1:{port}", start
    for proc in procs:
        proc.stop()


def _index(store: MilvusStore) -> None:
    for name, vector in VECTORS.items():
        store.replace_document("kb", f"o:{name}", name, f"{name}.md",
                               [IndexedChunk(chunk_id="00000", text=f"{name} policy",
                                             vector=vector)])


def test_what_was_indexed_is_searchable_again_after_a_restart(milvus):
    uri, start = milvus
    server = start()
    store = MilvusStore(uri, retry_s=60)
    _index(store)
    assert store.search("kb", VECTORS["hotel"], 1)[0].document_id == "hotel"
    assert server.popen is not None
    server.popen.send_signal(signal.SIGKILL)
    server.popen.wait()
    # A search while the server is down waits for it; the server comes back two seconds
    # later, as the mesh's supervisor brings it back, with the collection released (a
    # restarted server loads nothing). (Started from this thread: a child started from a
    # thread gets SIGTERM when that thread ends, see ragmesh.procs.)
    hits: list = []
    search = threading.Thread(target=lambda: hits.extend(store.search("kb", VECTORS["hotel"],
                                                                      2)))
    search.start()
    time.sleep(2)
    start()
    search.join(90)
    assert [h.document_id for h in hits][:1] == ["hotel"] and len(hits) == 2
    store.client.close()


def test_a_query_while_the_server_stays_away_fails_vectorstore_unavailable(
        milvus, make_settings, redis_client):
    uri, start = milvus
    server = start()
    settings = make_settings(vectorstore_uri=uri, vectorstore_retry_seconds=2)
    store = MilvusStore(uri, retry_s=settings.vectorstore_retry_seconds)
    _index(store)
    server.stop()
    tasks.setup(tasks.Resources(settings, redis_client, store))
    queries = QueryRecords(redis_client, 3600)
    params = QueryParams(top_k=2, collection="kb", max_tokens=8, temperature=0)
    query_id = queries.create(owner_of(KEY_A), "hotel?", params, deadline=600)
    started = time.monotonic()
    tasks.retrieve(RetrieveJob(query_id=query_id, question="hotel?", params=params,
                               vector=VECTORS["hotel"]).model_dump(mode="json"))
    view = queries.get(query_id)
    assert view["status"] == "failed"
    assert view["error"]["code"] == "vectorstore_unavailable"
    assert time.monotonic() - started < 30  # it gave up after its bound, not never
    with pytest.raises(VectorStoreUnavailable):
        store.delete_document(["kb"], "o:leave")
    store.client.close()
