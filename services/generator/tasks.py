"""RQ entry point of the generator: wait for a slot, generate, stream, write the result."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis

from services.generator import core, dispatch
from services.generator.engine import Generation
from services.generator.slots import Lease
from services.generator.trust import Scale
from shared import metrics, stages
from shared.jobs import TERMINAL_QUERY, GenerateJob, QueryStatus
from shared.logging import get_logger
from shared.records import QueryRecords, queue_timeout_error
from shared.review import LOW_TRUST, ReviewQueue
from shared.settings import Settings

log = get_logger(__name__)

# How often a running generation looks at Redis for a cancel and updates the partial answer.
_POLL_S = 0.25


@dataclass
class Resources:
    settings: Settings
    connection: redis.Redis
    pool: list[dispatch.EngineSlot]

    @property
    def queries(self) -> QueryRecords:
        return QueryRecords(self.connection, self.settings.query_result_ttl)


_resources: Resources | None = None


def setup(resources: Resources) -> None:
    global _resources
    _resources = resources


def _res() -> Resources:
    if _resources is None:
        raise RuntimeError("generator not set up: start it with `python -m services.generator`")
    return _resources


class _Watch:
    """During generation: publish the answer's pieces to the event stream (the first at once,
    then at most one write per `flush_s`: a fast engine's tokens go out together, not a Redis
    write each), keep the record's partial answer fresh, and notice a cancel (throttled to one
    Redis read per _POLL_S)."""

    def __init__(self, queries: QueryRecords, query_id: str, flush_s: float) -> None:
        self.queries, self.query_id, self.flush_s = queries, query_id, flush_s
        self._last_check = self._last_save = self._last_publish = 0.0
        self._gen: Generation | None = None
        self.published = 0

    def should_stop(self) -> str | None:
        now = time.monotonic()
        if now - self._last_check < _POLL_S:
            return None
        self._last_check = now
        status = self.queries.status(self.query_id)
        # Cancelled, or ended elsewhere (deadline): stop spending the engine's time.
        return "cancelled" if status is None or status in TERMINAL_QUERY else None

    def on_delta(self, gen: Generation) -> None:
        self._gen = gen
        now = time.monotonic()
        if not self.published or now - self._last_publish >= self.flush_s:
            self.flush()
        if now - self._last_save >= _POLL_S:
            self._last_save = now
            self.queries.transition(self.query_id, answer=gen.text)

    def flush(self) -> None:
        """Publish what the engine gave since the last write, in one piece."""
        gen = self._gen
        if gen is None or len(gen.deltas) <= self.published:
            return
        self.queries.publish_delta(self.query_id, "".join(gen.deltas[self.published:]))
        self.published = len(gen.deltas)
        self._last_publish = time.monotonic()


def _wanted(queries: QueryRecords, query_id: str) -> bool:
    raw = queries.raw(query_id)
    return bool(raw) and raw["status"] not in queries.terminal \
        and not queries.expire_if_overdue(query_id, raw=raw)


def generate(payload: dict[str, Any]) -> None:
    """Whether the query is still wanted is known once its stage starts (stages.start): a
    free slot is taken first, so a query that finds one reaches the engine with two round
    trips to Redis, and one that ended meanwhile gives its slot straight back."""
    job = GenerateJob.model_validate(payload)
    res = _res()
    queries = res.queries
    if not job.chunks:  # nothing relevant: answered without the engine, no slot needed
        _run(res, job, None)
        return
    deadline = job.queue_deadline or time.time() + res.settings.generator_queue_timeout
    got = dispatch.acquire(res.pool, deadline, lambda: _wanted(queries, job.query_id))
    if got is None:
        raw = queries.raw(job.query_id)
        if raw and queries.finish(job.query_id, QueryStatus.TIMED_OUT, queue_timeout_error(
                time.time() - float(raw.get("queued_since") or raw["created_at"]))):
            metrics.GENERATOR_QUEUE_TIMEOUTS.inc()
            metrics.QUERIES.labels("timed_out").inc()
        return
    choice, lease = got
    with lease:
        _gauge(choice, lease)
        _run(res, job, choice)
    _gauge(choice, lease)


def _gauge(choice: dispatch.EngineSlot, lease: Lease) -> None:
    metrics.GENERATOR_INFLIGHT.labels(choice.slots.url).set(lease.in_flight)
    metrics.GENERATOR_CAPACITY.labels(choice.slots.url).set(choice.slots.cap)


def _run(res: Resources, job: GenerateJob, choice: dispatch.EngineSlot | None) -> None:
    queries, s = res.queries, res.settings
    started = stages.start(queries, job.query_id, "generate", QueryStatus.GENERATING)
    if started is None:
        return
    watch = _Watch(queries, job.query_id, s.generator_stream_flush_ms / 1000)
    scale = Scale(s.retrieval_score_threshold, s.trust_full_score, s.trust_threshold)
    attempt = 0
    while True:
        outcome = core.answer(choice.engine if choice else None, job,  # type: ignore[arg-type]
                              tokens=choice.tokens if choice else None,  # type: ignore[arg-type]
                              max_context_tokens=s.generator_max_context_tokens,
                              timeout_s=s.generator_timeout, should_stop=watch.should_stop,
                              on_delta=watch.on_delta, scale=scale)
        # Retry only what the engine never started: no token of it has been published.
        retry = outcome.error is not None and outcome.error.code == "engine_unavailable" \
            and not watch.published and attempt < s.generator_retries \
            and queries.is_active(job.query_id)
        if not retry:
            break
        time.sleep(s.generator_retry_backoff * 2 ** attempt)
        attempt += 1
    watch.flush()  # the pieces held back, before the final event
    took = stages.done("generate", started, outcome.status.value)
    queries.finish(job.query_id, outcome.status, outcome.error, answer=outcome.answer,
                   citations=outcome.citations, usage=outcome.usage,
                   trust=outcome.trust.as_dict() if outcome.trust else None,
                   t_generate=took * 1000)
    metrics.QUERIES.labels(outcome.status.value).inc()
    metrics.GENERATED_TOKENS.inc(outcome.usage["completion_tokens"])
    metrics.PROMPT_TOKENS.inc(outcome.usage["prompt_tokens"])
    if outcome.first_token_s is not None:
        metrics.TIME_TO_FIRST_TOKEN.observe(outcome.first_token_s)
    log.info("query_finished", query_id=job.query_id, outcome=outcome.status.value,
             question=job.question,
             chunks=[(c.document_id, c.chunk_id, round(c.score, 4)) for c in job.chunks],
             generate_ms=round(took * 1000, 1), timings_ms=queries.timings_ms(job.query_id),
             retries=attempt, usage=outcome.usage,
             engine=choice.slots.url if choice else None,
             engine_ms=round(outcome.engine_s * 1000, 1) if outcome.engine_s is not None
             else None, trust_score=outcome.trust.score if outcome.trust else None,
             low_trust=outcome.trust.low_trust if outcome.trust else None,
             error=outcome.error.code if outcome.error else None)
    _account_trust(res, job.query_id, outcome)


def _account_trust(res: Resources, query_id: str, outcome: core.Outcome) -> None:
    """Trust metrics; a low-trust answer is kept for review (services/generator/trust.py)."""
    if outcome.trust is None:
        return
    metrics.ANSWER_TRUST.observe(outcome.trust.score)
    if outcome.trust.abstained:
        metrics.ABSTAINED_ANSWERS.inc()
    if outcome.trust.low_trust and outcome.status == QueryStatus.SUCCEEDED:
        metrics.LOW_TRUST_ANSWERS.inc()
        s = res.settings
        ReviewQueue(res.connection, s.review_ttl, s.review_max_items).keep(
            res.queries, query_id, LOW_TRUST)
        metrics.REVIEW_KEPT.labels(LOW_TRUST).inc()
