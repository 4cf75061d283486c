"""A worker killed mid-job (SIGKILL): its job is found within seconds by a live worker and
run again, or ended with a clear code; nothing is lost, nothing runs twice visibly."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from ragmesh.procs import Proc, wait_until
from services.api.app import create_app
from services.embedder.chunking import chunk_text
from shared.records import QueryRecords
from tests.conftest import KEY_A, ROOT
from tests.support.generators import generator_processes, submit
from tests.support.slow_engine import SlowEngine

pytestmark = pytest.mark.integration

A = {"Authorization": f"Bearer {KEY_A}"}


@pytest.fixture
def generators(redis_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    yield from generator_processes(redis_url, tmp_path)


def test_a_generation_whose_worker_dies_ends_worker_lost(generators, redis_client):
    engine = SlowEngine(tokens=2000, delay=0.05).start()
    try:
        [doomed] = generators(engine.url, generator_lanes=1)
        query_id = submit(redis_client, 60, max_tokens=2000)
        wait_until(lambda: engine.active == 1, 60, "generation to start")
        doomed.popen.send_signal(signal.SIGKILL)
        generators(engine.url, generator_lanes=1)  # a live worker, whose reaper finds the job
        queries = QueryRecords(redis_client, 60)
        wait_until(lambda: queries.status(query_id) == "failed", 60, "the lost job to end")
        view = queries.get(query_id)
        assert view["error"]["code"] == "worker_lost"
        assert view["answer"].startswith("tok0")  # what the client saw stays as it was
        assert engine.started == 1  # not generated a second time
    finally:
        engine.stop()


def _service(name: str, env: dict[str, str], log: Path) -> Proc:
    return Proc(name, [sys.executable, "-m", f"services.{name}"], log, env).start()


async def test_a_document_whose_embedder_dies_is_embedded_again(aiohttp_client, make_settings,
                                                               redis_url, tmp_path):
    settings = make_settings()
    env = {"RAGMESH_REDIS_URL": redis_url, "RAGMESH_VECTORSTORE_URI": settings.milvus_uri,
           "RAGMESH_WORKER_HEARTBEAT": "1", "RAGMESH_LOG_JSON": "true",
           "RAGMESH_STATE_DIR": str(tmp_path)}
    retriever = _service("retriever", env, tmp_path / "retriever.log")
    embedder = _service("embedder", env, tmp_path / "embedder1.log")
    api = await aiohttp_client(create_app(settings))
    # Large enough that embedding it takes a while on two cores.
    text = "\n\n".join((ROOT / "examples" / "handbook" / name).read_text()
                       for name in ("leave-policy.md", "remote-work.md", "benefits.md")) * 12
    resp = await api.post("/v1/documents", json={"text": text, "source": "big.md",
                                                 "document_id": "big"}, headers=A)
    assert resp.status == 202
    docs_url = "/v1/documents/big"

    async def status() -> str:
        return (await (await api.get(docs_url, headers=A)).json())["status"]

    for _ in range(600):
        if await status() == "processing":
            break
        await asyncio.sleep(0.1)
    assert await status() == "processing"
    embedder.popen.send_signal(signal.SIGKILL)
    second = _service("embedder", env, tmp_path / "embedder2.log")
    try:
        for _ in range(1200):
            if await status() in ("indexed", "failed"):
                break
            await asyncio.sleep(0.1)
        doc = await (await api.get(docs_url, headers=A)).json()
        assert doc["status"] == "indexed", doc
        assert doc["chunks"] == len(chunk_text(text, settings.ingest_chunk_size,
                                               settings.ingest_chunk_overlap))
        assert "job_recovered" in (tmp_path / "embedder2.log").read_text() + \
            (tmp_path / "retriever.log").read_text()
    finally:
        for proc in (second, retriever):
            proc.stop()
