"""The reaper against a real Valkey: a job whose lease ran out runs again, one that simply
ended while it looked is left alone (many lanes end jobs all the time), a job a worker took
off its queue but never began goes back to the queue, and leases that ran out while Redis
itself was down are not judged at once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import redis
from rq.serializers import JSONSerializer

from ragmesh.procs import free_port, wait_until
from ragmesh.valkey import valkey_proc, wait_for_valkey
from shared.jobs import EmbedQueryJob, QueryParams, Queues, Tasks
from shared.queue import enqueue, queue
from shared.recovery import INFLIGHT, JobTracker, lease_key, reap
from shared.worker import RagmeshWorker

pytestmark = pytest.mark.integration

PARAMS = QueryParams(top_k=3, collection="handbook", max_tokens=8, temperature=0)


def _uptime(client: redis.Redis) -> int:
    return int(client.info("server")["uptime_in_seconds"])


def test_a_job_taken_but_never_begun_goes_back_to_its_queue(redis_client):
    wait_until(lambda: _uptime(redis_client) >= 1, 10, "valkey uptime")
    job = enqueue(redis_client, Tasks.EMBED_QUERY, EmbedQueryJob(
        query_id="q1", question="How many days?", params=PARAMS), job_timeout=60)
    q = queue(redis_client, Queues.EMBED)
    # What RQ's dequeue does before the worker begins the job; then the worker dies.
    redis_client.lmove(q.key, q.intermediate_queue_key)
    assert q.count == 0

    assert reap(redis_client, 60, 60, lease_s=1) == 0  # first seen: it may be just starting
    time.sleep(1.1)
    assert reap(redis_client, 60, 60, lease_s=1) == 1
    assert q.job_ids == [job.id]  # the same job, at the front of its queue
    assert redis_client.llen(q.intermediate_queue_key) == 0


def test_a_job_that_began_is_not_put_back(redis_client):
    wait_until(lambda: _uptime(redis_client) >= 1, 10, "valkey uptime")
    job = enqueue(redis_client, Tasks.EMBED_QUERY, EmbedQueryJob(
        query_id="q2", question="How many days?", params=PARAMS), job_timeout=60)
    q = queue(redis_client, Queues.EMBED)
    # A worker with no embedder set up: the job begins and fails...
    RagmeshWorker([q], connection=redis_client, serializer=JSONSerializer).work(burst=True)
    # ...and its id stays in the intermediate list, as a worker on several queues leaves it.
    redis_client.lpush(q.intermediate_queue_key, job.id)
    for _ in range(2):
        assert reap(redis_client, 60, 60, lease_s=1) == 0
        time.sleep(1.1)
    assert q.count == 0


def test_leases_that_ran_out_while_redis_was_down_are_not_judged_at_once(tmp_path: Path):
    port = free_port()
    proc, url = valkey_proc(tmp_path / "valkey", "pw", port=port, appendfsync="always")
    proc.start()
    wait_for_valkey(proc, url)
    client = redis.Redis.from_url(url)
    try:
        tracker = JobTracker(client, lease_s=2)
        with client.pipeline() as pipe:  # a live worker's job
            tracker.begin("job-running", pipe)
            pipe.execute()
        proc.stop()
        time.sleep(2.5)  # the lease runs out while Redis is down
        proc.start()
        wait_for_valkey(proc, url)
        assert not client.exists("ragmesh:joblease:job-running")
        # Redis is back: the live worker gets a lease period to renew before anyone judges.
        assert reap(client, 60, 60, lease_s=2) == 0
        tracker.renew()
        time.sleep(2.1)
        tracker.renew()
        assert reap(client, 60, 60, lease_s=2) == 0
        assert client.zscore(INFLIGHT, "job-running") is not None  # still its own
    finally:
        client.close()
        proc.stop()


def running_job(client: redis.Redis, tracker: JobTracker) -> str:
    """An embed job taken off its queue by a worker that holds its lease."""
    job = enqueue(client, Tasks.EMBED_QUERY, EmbedQueryJob(
        query_id="0" * 32, question="q", params=PARAMS), job_timeout=60)
    queue(client, Queues.EMBED).remove(job.id)
    with client.pipeline() as pipe:  # as a worker takes it: in the job's start transaction
        tracker.begin(job.id, pipe)
        pipe.execute()
    return job.id


def queued(client: redis.Redis) -> int:
    return queue(client, Queues.EMBED).count


def test_a_job_whose_lease_ran_out_runs_again(redis_client: redis.Redis):
    wait_until(lambda: _uptime(redis_client) >= 1, 10, "valkey uptime")
    tracker = JobTracker(redis_client, lease_s=30)
    job_id = running_job(redis_client, tracker)
    redis_client.delete(lease_key(job_id))  # its worker died: nobody renews the lease
    assert reap(redis_client, 60, 60, lease_s=1) == 1
    assert queued(redis_client) == 1
    assert redis_client.zcard(INFLIGHT) == 0


class EndsWhileReaped(redis.Redis):
    """A client on which every job ends just after the reaper listed it."""

    tracker: JobTracker
    running: list[str]

    def exists(self, *names: Any) -> Any:
        while self.running:
            with self.pipeline() as pipe:  # as a worker ends it: with RQ's bookkeeping
                self.tracker.end(self.running.pop(), pipe)
                pipe.execute()
        return super().exists(*names)


def test_a_job_that_ends_while_the_reaper_looks_is_left_alone(redis_url: str):
    client = EndsWhileReaped.from_url(redis_url)
    wait_until(lambda: _uptime(client) >= 1, 10, "valkey uptime")
    client.tracker = tracker = JobTracker(client, lease_s=30)
    client.running = [running_job(client, tracker)]
    assert reap(client, 60, 60, lease_s=1) == 0
    assert queued(client) == 0
    client.close()
