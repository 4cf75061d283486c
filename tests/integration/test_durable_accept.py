"""A 202 is a promise: the API answers it only once Redis has the new job in its append-only
file on disk (WAITAOF), so that a Redis crash cannot lose an accepted query or document.
Each test runs its own Valkey with AOF on."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from ragmesh.procs import Proc, free_port
from ragmesh.valkey import valkey_proc, wait_for_valkey
from services.api.app import create_app
from shared.jobs import Queues
from shared.queue import queue
from tests.conftest import KEY_A

pytestmark = pytest.mark.integration

A = {"Authorization": f"Bearer {KEY_A}"}


@pytest.fixture
def aof_valkey(tmp_path: Path) -> Iterator[Callable[[str], tuple[Proc, str]]]:
    """start(appendfsync) -> (proc, url): a Valkey with AOF on, on one port and folder, which
    a test may kill and start again over the same data."""
    port, procs = free_port(), []

    def start(appendfsync: str) -> tuple[Proc, str]:
        proc, url = valkey_proc(tmp_path / "valkey", "durable-pw", port=port,
                                appendfsync=appendfsync)
        procs.append(proc.start())
        wait_for_valkey(proc, url)
        return proc, url

    yield start
    for proc in procs:
        proc.stop()


async def test_no_202_before_redis_has_the_job_on_disk(aiohttp_client, make_settings,
                                                       aof_valkey):
    # appendfsync no: Valkey never says the job is on disk, so the API cannot promise it.
    _, url = aof_valkey("no")
    api = await aiohttp_client(create_app(make_settings(redis_url=url, api_redis_timeout=0.4)))
    headers = {**A, "Idempotency-Key": "durable-1"}
    for path, body in (("/v1/queries", {"question": "How many days of leave?"}),
                       ("/v1/documents", {"text": "Leave: 27 days.", "source": "l.md"})):
        resp = await api.post(path, json=body, headers=headers if path == "/v1/queries"
                              else A)
        assert resp.status == 503, await resp.text()
        assert (await resp.json())["error"]["code"] == "queue_unavailable"
        assert int(resp.headers["Retry-After"]) > 0

    # Once Redis writes its file again, the retry (same key) gets the job that was created.
    client = redis.Redis.from_url(url)
    client.config_set("appendfsync", "everysec")
    resp = await api.post("/v1/queries", json={"question": "How many days of leave?"},
                          headers=headers)
    assert resp.status == 202
    assert resp.headers["Idempotent-Replayed"] == "true"
    # The query's job and the document's, one each: the retry did not queue a second.
    assert queue(client, Queues.EMBED).count == 2
    client.close()


async def test_every_accepted_job_survives_redis_killed_right_after(aiohttp_client,
                                                                   make_settings, aof_valkey):
    proc, url = aof_valkey("everysec")  # as production Redis runs
    api = await aiohttp_client(create_app(make_settings(redis_url=url)))
    ids = []
    for n in range(20):
        resp = await api.post("/v1/queries", json={"question": f"Question {n}?"}, headers=A)
        assert resp.status == 202
        ids.append((await resp.json())["id"])
    resp = await api.post("/v1/documents", json={"text": "Leave: 27 days.", "source": "l.md",
                                                 "document_id": "leave"}, headers=A)
    assert resp.status == 202
    assert proc.popen is not None
    proc.popen.kill()
    proc.popen.wait()

    _, url = aof_valkey("everysec")
    client = redis.Redis.from_url(url)
    try:
        assert all(client.hget(f"ragmesh:q:{i}", "status") == b"queued" for i in ids)
        assert queue(client, Queues.EMBED).count == len(ids) + 1  # every job is still queued
    finally:
        client.close()
