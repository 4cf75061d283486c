"""Jobs of a worker that died: found within seconds, run again or ended with a clear code.

RQ notices an abandoned job only a minute after its worker's last heartbeat, and then fails
it. ragmesh does better: each running job holds a short lease in Redis that its worker's
heartbeat thread renews. A job in flight whose lease ran out belongs to a dead worker, and
the reaper (any live worker, one at a time) hands it on: embedding, retrieval and document
jobs run again (they are idempotent: a query stage is claimed once, a document replaces its
own chunks); a generation, whose tokens a client may already have seen, ends the query
`failed` with code `worker_lost` rather than showing a second answer.

A job a worker took off its queue and died before starting (RQ keeps it in the queue's
"intermediate" list, where RQ itself would fail it a minute later) ran nowhere: the reaper
puts it back at the front of its queue as it is, generations included.

Lease expiry times are absolute, so they also run out while Redis itself is down: after
Redis restarts, live workers get one lease period to renew theirs before any job is judged.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis
from redis.client import Pipeline
from rq import Callback
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from shared import metrics
from shared.jobs import TASK_QUEUE, DocumentStatus, ErrorInfo, QueryStatus, Queues, Tasks
from shared.logging import get_logger
from shared.queue import FAILURE_CALLBACK, queue
from shared.records import PREFIX, DocumentRecords, QueryRecords

log = get_logger(__name__)

INFLIGHT = f"{PREFIX}:inflight"
ORPHANS = f"{PREFIX}:orphans"  # job id -> when the reaper first saw it taken but not begun
MAX_RECOVERIES = 2
_NOT_RERUN = {Tasks.GENERATE.value}


def lease_key(job_id: str) -> str:
    return f"{PREFIX}:joblease:{job_id}"


class JobTracker:
    """The jobs this process runs, and their leases."""

    def __init__(self, client: redis.Redis, lease_s: int) -> None:
        self.r, self.lease_s = client, lease_s
        self._running: set[str] = set()
        self._lock = threading.Lock()

    def begin(self, job_id: str, pipe: Pipeline) -> None:
        """Take the job's lease, in the transaction that marks it started."""
        with self._lock:
            self._running.add(job_id)
        pipe.set(lease_key(job_id), "1", ex=self.lease_s)
        pipe.zadd(INFLIGHT, {job_id: time.time()})

    def end(self, job_id: str, pipe: Pipeline) -> None:
        """Give the lease back, in the transaction that records how the job ended."""
        pipe.delete(lease_key(job_id))
        pipe.zrem(INFLIGHT, job_id)

    def forget(self, job_id: str) -> None:
        """Stop renewing the job's lease (had its end not reached Redis, the lease runs out
        and the reaper finds a finished job: a stage is claimed once, so nothing runs twice)."""
        with self._lock:
            self._running.discard(job_id)

    def busy(self) -> bool:
        with self._lock:
            return bool(self._running)

    def renew(self) -> None:
        with self._lock:
            running = list(self._running)
        if running:
            with self.r.pipeline() as pipe:
                for job_id in running:
                    pipe.set(lease_key(job_id), "1", ex=self.lease_s)
                pipe.execute()


class LeaseKeeper(threading.Thread):
    """Renews this process's job leases and runs the reaper every `interval` seconds, on a
    thread of its own: a readiness check that hangs (a vector store that does not answer)
    must not let the lease of a job that is still running run out."""

    def __init__(self, client: redis.Redis, tracker: JobTracker, interval: float,
                 result_ttl: int, stage_timeout: int) -> None:
        super().__init__(name="lease-keeper", daemon=True)
        self.client, self.tracker, self.interval = client, tracker, interval
        self.result_ttl, self.stage_timeout = result_ttl, stage_timeout
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self.tracker.renew()
                reap(self.client, self.result_ttl, self.stage_timeout, self.tracker.lease_s)
            except redis.RedisError:
                continue  # Redis away: nothing to renew it in; try again next round
            except Exception:  # never let the keeper die: leases depend on it
                log.exception("lease_keeper_error")

    def stop(self) -> None:
        self._stop_event.set()


def reap(client: redis.Redis, result_ttl: int, stage_timeout: int, lease_s: float) -> int:
    """Hand on every job in flight whose lease ran out, and put back every job a dead worker
    took but never began. Returns how many."""
    # One reaper at a time across the mesh; the lock outlives a slow pass.
    if not client.set(f"{PREFIX}:reaper", "1", nx=True, ex=30):
        return 0
    try:
        if int(client.info("server")["uptime_in_seconds"]) < lease_s:
            return 0  # Redis just came back: leases that ran out while it was down are stale
        return _reap_leases(client, result_ttl, stage_timeout) + _reap_orphans(client, lease_s)
    finally:
        client.delete(f"{PREFIX}:reaper")


def _reap_leases(client: redis.Redis, result_ttl: int, stage_timeout: int) -> int:
    handled = 0
    for raw_id in client.zrange(INFLIGHT, 0, -1):
        job_id = raw_id.decode()
        if client.exists(lease_key(job_id)):
            continue
        # A job that ended since ZRANGE has no lease either: `end` took it out of the set
        # in the same step, so only a job still in it has lost its worker.
        if not client.zrem(INFLIGHT, job_id):
            continue
        _recover(client, job_id, result_ttl, stage_timeout)
        handled += 1
    return handled


def _taken_not_begun(client: redis.Redis, name: Queues) -> list[str]:
    """Jobs a worker took off queue `name` that never began: still `queued`, not in flight."""
    ids = [i.decode() for i in client.lrange(queue(client, name).intermediate_queue_key, 0, -1)]
    out = []
    for job_id in ids:
        status = client.hget(Job.key_for(job_id), "status")
        if status is not None and status.decode() == JobStatus.QUEUED.value \
                and client.zscore(INFLIGHT, job_id) is None:
            out.append(job_id)
    return out


def _reap_orphans(client: redis.Redis, lease_s: float) -> int:
    """A job seen taken-but-not-begun on two passes a lease apart goes back to its queue."""
    seen = {k.decode(): float(v) for k, v in client.hgetall(ORPHANS).items()}
    now, handled, current = time.time(), 0, set()
    for name in Queues:
        q = queue(client, name)
        for job_id in _taken_not_begun(client, name):
            current.add(job_id)
            if job_id not in seen:
                client.hset(ORPHANS, job_id, now)
            elif now - seen[job_id] >= lease_s:
                with client.pipeline() as pipe:
                    pipe.lrem(q.intermediate_queue_key, 1, job_id)
                    pipe.lpush(q.key, job_id)
                    pipe.hdel(ORPHANS, job_id)
                    pipe.execute()
                metrics.JOBS.labels(name.value.removeprefix("ragmesh-"), "requeued").inc()
                log.warning("job_requeued", job_id=job_id, queue=name.value)
                handled += 1
    gone = set(seen) - current
    if gone:
        client.hdel(ORPHANS, *gone)
    return handled


def _recover(client: redis.Redis, job_id: str, result_ttl: int, stage_timeout: int) -> None:
    try:
        job = Job.fetch(job_id, connection=client, serializer=JSONSerializer)
    except Exception:  # the job's data is gone (expired): nothing left to run
        return
    payload: dict[str, Any] = job.args[0] if job.args else {}
    attempts = int(job.meta.get("recoveries", 0))
    task = Tasks(job.func_name)
    if task.value in _NOT_RERUN or attempts >= MAX_RECOVERIES:
        _give_up(client, payload, result_ttl)
        metrics.JOBS.labels(task.name.lower(), "worker_lost").inc()
        log.warning("job_lost", job_id=job_id, task=task.value, attempts=attempts)
        return
    again = queue(client, TASK_QUEUE[task]).enqueue(
        task.value, payload, job_timeout=job.timeout or stage_timeout, result_ttl=0,
        description=task.value, failure_ttl=24 * 3600, meta={"recoveries": attempts + 1},
        on_failure=Callback(FAILURE_CALLBACK))
    if "query_id" in payload:
        # The new job may claim the stage the dead one had claimed.
        stage = task.name.lower().removesuffix("_query")
        QueryRecords(client, result_ttl).transition(payload["query_id"],
                                                    **{f"claim_{stage}": again.id})
    metrics.JOBS.labels(task.name.lower(), "recovered").inc()
    log.warning("job_recovered", job_id=job_id, new_job_id=again.id, task=task.value,
                attempt=attempts + 1)


def _give_up(client: redis.Redis, payload: dict[str, Any], result_ttl: int) -> None:
    error = ErrorInfo(code="worker_lost", message="the worker running this job died; "
                      "submit it again")
    if "query_id" in payload:
        QueryRecords(client, result_ttl).finish(payload["query_id"], QueryStatus.FAILED, error)
    elif "doc_key" in payload:
        DocumentRecords(client, result_ttl).transition(
            payload["doc_key"], DocumentStatus.FAILED.value, error=error.model_dump())
