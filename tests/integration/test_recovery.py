"""shared/recovery.py against a real Valkey: the reaper hands on a job whose lease ran out,
and never one that simply ended while it looked (many lanes end jobs all the time)."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from shared.jobs import EmbedQueryJob, QueryParams, Queues, Tasks
from shared.queue import enqueue, queue
from shared.recovery import INFLIGHT, JobTracker, lease_key, reap

pytestmark = pytest.mark.integration

PARAMS = QueryParams(top_k=1, collection="c", max_tokens=8, temperature=0)


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
    tracker = JobTracker(redis_client, lease_s=30)
    job_id = running_job(redis_client, tracker)
    redis_client.delete(lease_key(job_id))  # its worker died: nobody renews the lease
    assert reap(redis_client, 60, 60) == 1
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
    client.tracker = tracker = JobTracker(client, lease_s=30)
    client.running = [running_job(client, tracker)]
    assert reap(client, 60, 60) == 0
    assert queued(client) == 0
    client.close()
