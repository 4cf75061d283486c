"""The bookkeeping every query stage does: start (unless the query already ended), finish."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime

from rq import get_current_job
from rq.job import Job

from shared import metrics
from shared.jobs import QueryStatus
from shared.records import Begun, QueryRecords


def _waited_seconds(job: Job | None) -> float:
    if job is None or job.enqueued_at is None:
        return 0.0
    enqueued = job.enqueued_at
    if enqueued.tzinfo is None:
        enqueued = enqueued.replace(tzinfo=UTC)
    return max(0.0, (datetime.now(UTC) - enqueued).total_seconds())


def start(queries: QueryRecords, query_id: str, stage: str, status: QueryStatus,
          carried: Mapping[str, float] | None = None) -> float | None:
    """Mark `stage` as started (one round trip to Redis), writing the work times `carried`
    from the stages before. None when the query was cancelled, timed out or is gone, or
    another job runs this stage."""
    job = get_current_job()
    waited = _waited_seconds(job)
    begun = queries.begin_stage(query_id, stage, status, job.id if job else "", waited, carried)
    if begun == Begun.STARTED:
        metrics.STAGE_QUEUED.labels(stage).observe(waited)
        return time.perf_counter()
    if begun == Begun.OVERDUE:
        queries.expire_if_overdue(query_id)
    metrics.JOBS.labels(stage, {Begun.OVERDUE: "expired", Begun.CLAIMED: "duplicate"}
                        .get(begun, "skipped")).inc()
    return None


def done(stage: str, started: float, outcome: str = "ok") -> float:
    """The stage's work time, counted. The caller writes it on the record along with what it
    writes next (the next stage's start, the queue, the answer): no round trip of its own."""
    took = time.perf_counter() - started
    metrics.STAGE_DURATION.labels(stage).observe(took)
    metrics.JOBS.labels(stage, outcome).inc()
    return took
