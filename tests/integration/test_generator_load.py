"""The generator under load: real generator processes (several lanes each, two replicas),
real Valkey, and an OpenAI-compatible engine that is deliberately slow and counts what it
sees. The same checks against a real vLLM engine are in test_generator_vllm.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragmesh.procs import free_port, wait_until
from services.api.app import create_app
from shared import health
from shared.records import QueryRecords
from tests.conftest import KEY_A, KEY_B
from tests.support.generators import generator_processes, submit, wait_all
from tests.support.slow_engine import SlowEngine

pytestmark = pytest.mark.integration

A = {"Authorization": f"Bearer {KEY_A}"}
@pytest.fixture
def generators(redis_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    yield from generator_processes(redis_url, tmp_path)


@pytest.fixture
def engine() -> Iterator[SlowEngine]:
    slow = SlowEngine().start()
    yield slow
    slow.stop()


def test_the_cap_holds_across_replicas_under_a_burst(engine, generators, redis_client):
    engine.tokens, engine.delay = 10, 0.05
    generators(engine.url, replicas=2, generator_max_concurrency=2, generator_lanes=3,
               generator_queue_timeout=120)
    ids = [submit(redis_client, queue_timeout=120) for _ in range(10)]
    views = wait_all(redis_client, ids)
    assert [v["status"] for v in views] == ["succeeded"] * 10
    assert engine.max_active == 2  # used to the full, never beyond, by 6 lanes on 2 replicas
    assert engine.started == 10 and engine.abandoned == 0
    assert all(v["answer"].startswith("tok0 tok1") for v in views)
    assert redis_client.zcard("ragmesh:waiting:generate") == 0


def test_queries_that_cannot_start_in_time_end_queue_timeout_unsent(engine, generators,
                                                                   redis_client):
    engine.tokens, engine.delay = 40, 0.1  # one generation holds the only slot for ~4 s
    generators(engine.url, generator_max_concurrency=1, generator_lanes=3)
    first = submit(redis_client, queue_timeout=30)
    wait_until(lambda: engine.active == 1, 30, "first generation")
    waiting = [submit(redis_client, queue_timeout=1.0) for _ in range(2)]
    queries = QueryRecords(redis_client, 3600)
    view = queries.get(waiting[1])
    assert view["status"] == "queued"
    assert view["queue"]["stage"] == "generate" and view["queue"]["position"] >= 2
    views = wait_all(redis_client, [first, *waiting])
    assert views[0]["status"] == "succeeded"
    for v in views[1:]:
        assert v["status"] == "timed_out" and v["error"]["code"] == "queue_timeout"
        assert v["answer"] is None
    assert engine.started == 1  # the timed-out ones never reached the engine


def test_a_query_that_waits_less_than_the_timeout_is_served(engine, generators, redis_client):
    engine.tokens, engine.delay = 10, 0.05
    generators(engine.url, generator_max_concurrency=1, generator_lanes=2)
    ids = [submit(redis_client, queue_timeout=60) for _ in range(4)]
    assert [v["status"] for v in wait_all(redis_client, ids)] == ["succeeded"] * 4
    assert engine.max_active == 1 and engine.started == 4


def test_generation_timeout_aborts_at_the_engine_and_keeps_the_partial_answer(
        engine, generators, redis_client):
    engine.tokens, engine.delay = 200, 0.05
    generators(engine.url, generator_timeout=1.5)
    [view] = wait_all(redis_client, [submit(redis_client, 30, max_tokens=500)])
    assert view["status"] == "timed_out" and view["error"]["code"] == "generation_timeout"
    assert view["answer"].startswith("tok0 tok1")
    assert engine.wait_idle() and engine.abandoned == 1 and engine.finished == 0


async def test_cancel_during_generation_aborts_at_the_engine(engine, generators, redis_client,
                                                           aiohttp_client, make_settings):
    engine.tokens, engine.delay = 400, 0.05
    generators(engine.url)
    api = await aiohttp_client(create_app(make_settings()))
    query_id = submit(redis_client, 30, max_tokens=500)
    queries = QueryRecords(redis_client, 3600)
    wait_until(lambda: bool((queries.get(query_id) or {}).get("answer")), 30, "first tokens")
    partial = (await (await api.get(f"/v1/queries/{query_id}", headers=A)).json())
    assert partial["status"] == "generating" and partial["answer"].startswith("tok0")
    resp = await api.delete(f"/v1/queries/{query_id}", headers=A)
    assert (await resp.json())["status"] == "cancelled"
    assert engine.wait_idle(10) and engine.abandoned == 1 and engine.finished == 0
    assert queries.get(query_id)["status"] == "cancelled"


def _parse_sse(text: str) -> list[dict]:
    events = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines()
                      if line and not line.startswith(":"))
        if fields:
            events.append({"id": fields.get("id"), "event": fields.get("event"),
                           "data": json.loads(fields["data"])})
    return events


async def test_events_stream_tokens_and_resume_without_loss_or_repeat(
        engine, generators, redis_client, aiohttp_client, make_settings):
    engine.tokens, engine.delay = 30, 0.05
    generators(engine.url)
    api = await aiohttp_client(create_app(make_settings()))
    query_id = submit(redis_client, 30)
    url = f"/v1/queries/{query_id}/events"
    # First connection: read until a few tokens arrived, then drop it.
    resp = await api.get(url, headers=A)
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    seen = ""
    while seen.count("event: delta") < 5:
        seen += (await resp.content.readany()).decode()
    resp.close()
    first = _parse_sse(seen.rsplit("\n\n", 1)[0] + "\n\n")  # only complete events
    # Reconnect after the last complete event, as a browser's EventSource would.
    resp = await api.get(url, headers={**A, "Last-Event-ID": first[-1]["id"]})
    rest = _parse_sse(await resp.text())
    events = first + rest
    ids = [e["id"] for e in events if e["event"] != "final"]
    assert len(ids) == len(set(ids)) and ids == sorted(ids, key=lambda i: tuple(
        map(int, i.split("-"))))
    statuses = [e["data"]["status"] for e in events if e["event"] == "status"]
    assert statuses[0] == "queued" and "generating" in statuses and statuses[-1] == "succeeded"
    final = events[-1]
    assert final["event"] == "final" and final["data"]["status"] == "succeeded"
    streamed = "".join(e["data"]["text"] for e in events if e["event"] == "delta")
    assert streamed.strip() == final["data"]["answer"]
    assert streamed == "".join(f"tok{i} " for i in range(30))
    # A client that comes back after the end gets the result once more, and nothing else.
    again = _parse_sse(await (await api.get(url, headers={
        **A, "Last-Event-ID": final["id"]})).text())
    assert [e["event"] for e in again] == ["final"]
    # The stream is private like the query.
    assert (await api.get(url, headers={"Authorization": f"Bearer {KEY_B}"})).status == 404


def test_engine_down_makes_the_generator_unhealthy_and_queries_fail_cleanly(
        generators, redis_client):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    generators(dead, generator_retries=2, generator_retry_backoff=0.1)
    beats = health.workers(redis_client, "generator")
    assert beats and not any(b["ready"] for b in beats)
    assert "engine unreachable" in beats[0]["detail"]
    [view] = wait_all(redis_client, [submit(redis_client, 30)])
    assert view["status"] == "failed" and view["error"]["code"] == "engine_unavailable"


def test_a_dead_worker_never_leaks_its_slot(engine, generators, redis_client):
    engine.tokens, engine.delay = 400, 0.05
    [proc] = generators(engine.url, generator_max_concurrency=1, generator_lanes=1,
                        generator_lease_seconds=2)
    first = submit(redis_client, 60, max_tokens=500)
    wait_until(lambda: engine.active == 1, 30, "generation")
    proc.kill()  # SIGKILL while holding the only slot
    assert engine.wait_idle(10)
    generators(engine.url, generator_max_concurrency=1, generator_lanes=1)
    engine.tokens = 5
    second = submit(redis_client, 60)
    views = wait_all(redis_client, [second])
    assert views[0]["status"] == "succeeded"  # the lease ran out; the slot came back
    assert first != second
