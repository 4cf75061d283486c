"""The mesh's workers in-process over real components, drained in RQ burst mode."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from rq.serializers import JSONSerializer

from services.embedder import tasks as embedder_tasks
from services.generator import tasks as generator_tasks
from services.generator.__main__ import build_pool
from services.retriever import tasks as retriever_tasks
from services.retriever.store import MilvusStore
from shared.jobs import Queues
from shared.queue import connect, queue
from shared.settings import Settings
from shared.worker import LaneWorker


@dataclass
class Workers:
    settings: Settings
    store: MilvusStore
    drain: Callable[[], None]


@pytest.fixture
def workers(make_settings, encoder, vllm_server) -> Iterator[Workers]:  # type: ignore[no-untyped-def]
    """Real embedder, retriever and generator code; `drain()` runs every queued job."""
    settings = make_settings(generator_engine_url=vllm_server)
    conn = connect(settings)
    store = MilvusStore(settings.milvus_uri)
    pool = build_pool(settings, conn)
    embedder_tasks.setup(embedder_tasks.Resources(settings, conn, encoder))
    retriever_tasks.setup(retriever_tasks.Resources(settings, conn, store))
    generator_tasks.setup(generator_tasks.Resources(settings, conn, pool))

    def drain() -> None:
        worker = LaneWorker([queue(conn, q) for q in Queues], connection=conn,
                                serializer=JSONSerializer)
        worker.work(burst=True)

    yield Workers(settings, store, drain)
    for slot in pool:
        slot.engine.close()
    store.client.close()
    conn.close()
