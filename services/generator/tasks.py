"""RQ entry point of the generator: generate, publish partial answers, write the result."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis

from services.generator import core
from services.generator.engine import Generation, OpenAIEngine
from services.generator.trust import Scale
from shared import metrics, stages
from shared.jobs import TERMINAL_QUERY, GenerateJob, QueryStatus
from shared.logging import get_logger
from shared.records import QueryRecords
from shared.review import LOW_TRUST, ReviewQueue
from shared.settings import Settings

log = get_logger(__name__)

# How often a running generation looks at Redis for a cancel and publishes its partial answer.
_POLL_S = 0.25


@dataclass
class Resources:
    settings: Settings
    connection: redis.Redis
    engine: OpenAIEngine

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
    """Throttled Redis checks during generation: cancelled? and partial answer out."""

    def __init__(self, queries: QueryRecords, query_id: str) -> None:
        self.queries, self.query_id = queries, query_id
        self._last = 0.0

    def should_stop(self) -> str | None:
        now = time.monotonic()
        if now - self._last < _POLL_S:
            return None
        self._last = now
        status = self.queries.status(self.query_id)
        if status == QueryStatus.CANCELLED or status is None:
            return "cancelled"
        if status in TERMINAL_QUERY:
            return "cancelled"  # ended elsewhere (deadline): stop spending the engine's time
        return None

    def on_delta(self, gen: Generation) -> None:
        if time.monotonic() - self._last >= _POLL_S:
            self.queries.transition(self.query_id, answer=gen.text)


def generate(payload: dict[str, Any]) -> None:
    job = GenerateJob.model_validate(payload)
    res = _res()
    queries = res.queries
    started = stages.start(queries, job.query_id, "generate", QueryStatus.GENERATING)
    if started is None:
        return
    watch = _Watch(queries, job.query_id)
    s = res.settings
    outcome = core.answer(res.engine, job, max_context_chars=s.generator_max_context_chars,
                          timeout_s=s.generator_timeout, should_stop=watch.should_stop,
                          on_delta=watch.on_delta, scale=Scale(
                              s.retrieval_score_threshold, s.trust_full_score, s.trust_threshold))
    took = stages.done(queries, job.query_id, "generate", started, outcome.status.value)
    queries.finish(job.query_id, outcome.status, outcome.error, answer=outcome.answer,
                   citations=outcome.citations, usage=outcome.usage,
                   trust=outcome.trust.as_dict() if outcome.trust else None)
    metrics.QUERIES.labels(outcome.status.value).inc()
    metrics.GENERATED_TOKENS.inc(outcome.usage["completion_tokens"])
    metrics.PROMPT_TOKENS.inc(outcome.usage["prompt_tokens"])
    if outcome.first_token_s is not None:
        metrics.TIME_TO_FIRST_TOKEN.observe(outcome.first_token_s)
    log.info("query_finished", query_id=job.query_id, outcome=outcome.status.value,
             question=job.question,
             chunks=[(c.document_id, c.chunk_id, round(c.score, 4)) for c in job.chunks],
             generate_ms=round(took * 1000, 1), usage=outcome.usage,
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
