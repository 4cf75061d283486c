"""Helpers for generator tests: real generator processes, and queries queued for them the
way the retriever queues them."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import redis

from ragmesh.procs import Proc, wait_until
from shared import health
from shared.jobs import TERMINAL_QUERY, Chunk, GenerateJob, QueryParams, Tasks
from shared.queue import enqueue
from shared.records import QueryRecords, owner_of
from tests.conftest import KEY_A

CHUNKS = [Chunk(document_id="d1", chunk_id="00000", source="leave-policy.md",
                text="Employees get 27 days of annual leave.", score=0.8)]


def generator_processes(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., list[Proc]]]:
    """Yields start(engine_url, replicas, model, **settings): real `python -m
    services.generator` processes, stopped at the end."""
    started: list[Proc] = []

    def start(engine_url: str, replicas: int = 1, model: str = "slow",
              **settings: object) -> list[Proc]:
        env = {"RAGMESH_REDIS_URL": redis_url, "RAGMESH_GENERATOR_ENGINE_URL": engine_url,
               "RAGMESH_GENERATOR_MODEL": model, "RAGMESH_WORKER_HEARTBEAT": "1",
               "RAGMESH_STATE_DIR": str(tmp_path), "RAGMESH_LOG_JSON": "true"}
        env.update({f"RAGMESH_{k.upper()}": str(v) for k, v in settings.items()})
        procs = []
        for i in range(replicas):
            env_i = {**env, "RAGMESH_WORKER_NAME": f"generator-test-{len(started) + i}"}
            procs.append(Proc(f"generator{i}", [sys.executable, "-m", "services.generator"],
                              tmp_path / f"generator{len(started) + i}.log", env_i).start())
        started.extend(procs)
        client = redis.Redis.from_url(redis_url)
        names = {f"generator-test-{len(started) - len(procs) + i}" for i in range(replicas)}
        wait_until(lambda: names <= {w["worker"] for w in health.workers(client, "generator")},
                   60, "generators", procs)
        client.close()
        return procs

    yield start
    for proc in started:
        proc.stop(grace=20)


def submit(client: redis.Redis, queue_timeout: float, question: str = "How many days?",
           max_tokens: int = 64) -> str:
    """What the retriever does: the query now waits for a slot; its generate job is queued."""
    queries = QueryRecords(client, 3600)
    params = QueryParams(top_k=1, collection="handbook", max_tokens=max_tokens, temperature=0)
    query_id = queries.create(owner_of(KEY_A), question, params, deadline=600)
    with client.pipeline() as pipe:
        pipe.multi()
        deadline = queries.wait_for_generation(query_id, queue_timeout, pipe)
        assert deadline is not None
        enqueue(client, Tasks.GENERATE, GenerateJob(query_id=query_id, question=question,
                                                    params=params, chunks=CHUNKS,
                                                    queue_deadline=deadline),
                job_timeout=300, pipeline=pipe)
        pipe.execute()
    return query_id


def wait_all(client: redis.Redis, ids: list[str], timeout: float = 120) -> list[dict]:
    queries = QueryRecords(client, 3600)
    wait_until(lambda: all(queries.status(i) in TERMINAL_QUERY for i in ids), timeout,
               "queries to end")
    return [queries.get(i) for i in ids]  # type: ignore[misc]


