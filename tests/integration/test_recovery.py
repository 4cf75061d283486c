"""The reaper against a real Valkey: a job a worker took off its queue but never began goes
back to the queue; leases that ran out while Redis itself was down are not judged at once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from rq.serializers import JSONSerializer

from ragmesh.procs import free_port, wait_until
from ragmesh.valkey import valkey_proc, wait_for_valkey
from shared.jobs import EmbedQueryJob, QueryParams, Queues, Tasks
from shared.queue import enqueue, queue
from shared.recovery import INFLIGHT, JobTracker, reap
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
        tracker.begin("job-running")  # a live worker's job
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
