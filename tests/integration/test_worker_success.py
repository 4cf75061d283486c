"""A job's success in one round trip (shared.worker.RagmeshWorker.handle_job_success), against
a real Valkey: what RQ would leave behind for a job without a result is all that is left."""

from __future__ import annotations

import pytest
import redis
from rq import Queue
from rq.executions import WORKER_EXECUTIONS_KEY_TEMPLATE
from rq.job import Job
from rq.registry import FinishedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from shared.worker import RagmeshWorker

pytestmark = pytest.mark.integration


def _run(client: redis.Redis, result_ttl: int) -> tuple[Job, Queue, RagmeshWorker]:
    q = Queue("success-test", connection=client, serializer=JSONSerializer)
    job = q.enqueue("builtins.len", "four", result_ttl=result_ttl, description="len")
    worker = RagmeshWorker([q], connection=client, serializer=JSONSerializer)
    worker.work(burst=True)
    return job, q, worker


def _leftovers(client: redis.Redis, job: Job) -> list[str]:
    return sorted(k.decode() for k in client.scan_iter(f"*{job.id}*"))


def test_a_job_without_result_leaves_nothing_behind(redis_client: redis.Redis):
    job, q, worker = _run(redis_client, result_ttl=0)
    assert _leftovers(redis_client, job) == []
    assert StartedJobRegistry(queue=q).count == 0
    assert FinishedJobRegistry(queue=q).count == 0
    assert redis_client.smembers(WORKER_EXECUTIONS_KEY_TEMPLATE.format(worker.name)) == set()
    worker.refresh()
    assert worker.successful_job_count == 1
    assert worker.total_working_time > 0


def test_a_job_that_keeps_its_result_takes_rqs_own_path(redis_client: redis.Redis):
    job, q, worker = _run(redis_client, result_ttl=60)
    job.refresh()
    assert job.get_status() == "finished"
    assert job.return_value() == 4
    assert FinishedJobRegistry(queue=q).get_job_ids() == [job.id]
    assert StartedJobRegistry(queue=q).count == 0
