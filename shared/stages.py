"""The bookkeeping every query stage does: start (unless the query already ended), finish."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from rq import get_current_job

from shared import metrics
from shared.jobs import QueryStatus
from shared.records import QueryRecords


def _waited_seconds() -> float:
    job = get_current_job()
    if job is None or job.enqueued_at is None:
        return 0.0
    enqueued = job.enqueued_at
    if enqueued.tzinfo is None:
        enqueued = enqueued.replace(tzinfo=UTC)
    return max(0.0, (datetime.now(UTC) - enqueued).total_seconds())


def start(queries: QueryRecords, query_id: str, stage: str, status: QueryStatus) -> float | None:
    """Mark `stage` as started. None when the query was cancelled, timed out or is gone."""
    if queries.expire_if_overdue(query_id):
        metrics.JOBS.labels(stage, "expired").inc()
        return None
    job = get_current_job()
    if job is not None and not queries.claim(query_id, stage, job.id):
        metrics.JOBS.labels(stage, "duplicate").inc()
        return None
    waited = _waited_seconds()
    if not queries.stage_started(query_id, stage, status, waited):
        metrics.JOBS.labels(stage, "skipped").inc()
        return None
    metrics.STAGE_QUEUED.labels(stage).observe(waited)
    return time.perf_counter()


def done(queries: QueryRecords, query_id: str, stage: str, started: float,
         outcome: str = "ok") -> float:
    took = time.perf_counter() - started
    queries.stage_done(query_id, stage, took)
    metrics.STAGE_DURATION.labels(stage).observe(took)
    metrics.JOBS.labels(stage, outcome).inc()
    return took
