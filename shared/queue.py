"""Redis connections and RQ queues: JSON-serialised, one queue per stage."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import redis
from pydantic import BaseModel
from redis.backoff import ExponentialBackoff
from redis.client import Pipeline
from redis.retry import Retry
from rq import Callback, Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from shared.jobs import TASK_QUEUE, ErrorInfo, Queues, Tasks
from shared.settings import Settings

FAILURE_CALLBACK = "shared.queue.on_job_failure"


def connect(settings: Settings, *, timeout: float | None = None) -> redis.Redis:
    """A Redis client for the configured URL (the password travels inside the URL).

    `timeout`: for a client that must answer within a bound (the API): connect and read
    time out after that many seconds, and a failed command is tried once more, not redis-py's
    ten times, so that an unreachable Redis costs a request about twice `timeout`.

    Without it (the workers), a command waits out a Redis restart: it is tried again for
    about `worker_redis_retry_seconds` before it fails, so the job in hand goes on instead
    of failing (and its worker with it)."""
    if timeout is not None:
        return redis.Redis.from_url(
            settings.redis_url.get_secret_value(),
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            health_check_interval=15,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
        )
    return redis.Redis.from_url(
        settings.redis_url.get_secret_value(),
        socket_connect_timeout=5,
        socket_timeout=30,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=_BACKOFF_CAP_S, base=0.05),
                    retries_for(settings.worker_redis_retry_seconds)),
        retry_on_timeout=True,
    )


_BACKOFF_CAP_S = 1.0


def retries_for(seconds: float) -> int:
    """How many tries of a backoff that doubles from 50 ms up to a second take `seconds`
    (the first five take about one and a half)."""
    return 5 + math.ceil(max(0.0, seconds - 1.5) / _BACKOFF_CAP_S)


def queue(connection: redis.Redis, name: Queues) -> Queue:
    # JSON, never pickle: a pickled payload in Redis is code execution on every worker.
    return Queue(name.value, connection=connection, serializer=JSONSerializer)


_QUEUES: dict[tuple[int, Queues], Queue] = {}


def _queue_for(connection: redis.Redis, name: Queues) -> Queue:
    """The stage queue on `connection`, built once: a Queue holds no state of its own beyond
    its name, connection and serializer, and building one costs more than enqueueing on it."""
    key = (id(connection), name)
    found = _QUEUES.get(key)
    if found is None or found.connection is not connection:  # new, or a reused id()
        if len(_QUEUES) >= 64:  # processes hold a few clients; tests make many
            _QUEUES.clear()
        found = _QUEUES[key] = queue(connection, name)
    return found


def enqueue(connection: redis.Redis, task: Tasks, payload: BaseModel, *, job_timeout: int,
            job_id: str | None = None, pipeline: Pipeline | None = None) -> Job:
    """Enqueue `task` with a validated payload on the stage queue it belongs to, in one
    transaction (RQ alone takes two round trips); in `pipeline` when one is given (a
    transaction: `multi()` before its first command), which the caller then sends."""
    with connection.pipeline() if pipeline is None else contextlib.nullcontext(pipeline) as pipe:
        job = _queue_for(connection, TASK_QUEUE[task]).enqueue(
            task.value,
            payload.model_dump(mode="json"),
            # RQ's default description is the call's repr, the whole payload (a document's
            # text, a question's vector) built and stored once more for every job.
            description=task.value,
            job_id=job_id,
            job_timeout=job_timeout,
            # Nothing reads an RQ result: outcomes go to the records. RQ deletes a job with
            # result_ttl 0 as it succeeds (shared.worker does it in one round trip).
            result_ttl=0,
            failure_ttl=24 * 3600,
            on_failure=Callback(FAILURE_CALLBACK),
            pipeline=pipe,
        )
        if pipeline is None:
            pipe.execute()
    return job


def on_job_failure(job: Job, connection: redis.Redis, exc_type: Any, exc: Any, tb: Any) -> None:
    """Safety net for exceptions a task did not handle: its record ends `failed`, never stuck."""
    from shared.jobs import DocumentStatus, QueryStatus  # noqa: PLC0415
    from shared.records import DocumentRecords, QueryRecords  # noqa: PLC0415 (import cycle)

    if exc_type is not None and exc_type.__name__ == "AbandonedJobError":
        return  # its worker died: shared.recovery has handed the job on already, or will
    payload = job.args[0] if job.args and isinstance(job.args[0], dict) else {}
    timed_out = exc_type is not None and exc_type.__name__ == "JobTimeoutException"
    error = ErrorInfo(code="stage_timeout" if timed_out else "internal_error",
                      message=f"{job.func_name.rsplit('.', 1)[-1]} failed: "
                              f"{exc_type.__name__ if exc_type else 'unknown error'}")
    if "query_id" in payload:
        QueryRecords(connection, ttl_seconds=0).finish(payload["query_id"], QueryStatus.FAILED,
                                                      error)
    elif "doc_key" in payload:
        DocumentRecords(connection, ttl_seconds=0).transition(
            payload["doc_key"], DocumentStatus.FAILED.value, error=error.model_dump())


DURABLE_MARK = "ragmesh:durable"


def persisted(connection: redis.Redis, timeout_ms: int) -> bool:
    """Whether everything written to Redis so far is in its append-only file on disk, waiting
    up to `timeout_ms` (WAITAOF, Redis and Valkey 7.2+). True as well when Redis keeps no AOF
    or cannot say: then there is nothing to wait for."""
    # WAITAOF waits for this connection's own last write, and a write reaches the AOF after
    # every write before it: one small write here covers the caller's, on any connection.
    with connection.pipeline(transaction=False) as pipe:
        pipe.incr(DURABLE_MARK)
        pipe.execute_command("WAITAOF", 1, 0, timeout_ms)
        try:
            _, (local, _replicas) = pipe.execute()
        except redis.ResponseError as exc:
            message = str(exc).lower()
            if "appendonly is disabled" in message or "unknown command" in message:
                return True
            raise
    return int(local) >= 1
