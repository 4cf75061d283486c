"""RQ entry points of the embedder: validate, call `core`, hand on to the next stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from services.embedder import core
from shared import metrics, stages
from shared.jobs import (
    DocumentStatus,
    EmbedDocumentJob,
    EmbedQueryJob,
    QueryStatus,
    RetrieveJob,
    Tasks,
)
from shared.queue import enqueue
from shared.records import DocumentRecords, QueryRecords
from shared.settings import Settings


@dataclass
class Resources:
    settings: Settings
    connection: redis.Redis
    encoder: core.Encoder

    @property
    def queries(self) -> QueryRecords:
        return QueryRecords(self.connection, self.settings.query_result_ttl)

    @property
    def documents(self) -> DocumentRecords:
        return DocumentRecords(self.connection, self.settings.query_result_ttl)


_resources: Resources | None = None


def setup(resources: Resources) -> None:
    """Called once per process, after the model is loaded (see __main__)."""
    global _resources
    _resources = resources


def _res() -> Resources:
    if _resources is None:
        raise RuntimeError("embedder not set up: start it with `python -m services.embedder`")
    return _resources


def embed_query(payload: dict[str, Any]) -> None:
    job = EmbedQueryJob.model_validate(payload)
    res = _res()
    started = stages.start(res.queries, job.query_id, "embed", QueryStatus.EMBEDDING)
    if started is None:
        return
    [vector] = core.embed(res.encoder, [job.question], res.settings.embedding_batch_size)
    took = stages.done("embed", started)
    next_job = RetrieveJob(**{**job.model_dump(), "vector": vector,
                              "timings_ms": {**job.timings_ms, "embed": took * 1000}})
    enqueue(res.connection, Tasks.RETRIEVE, next_job, job_timeout=res.settings.stage_timeout)


def embed_document(payload: dict[str, Any]) -> None:
    job = EmbedDocumentJob.model_validate(payload)
    res, docs = _res(), _res().documents
    if docs.generation(job.doc_key) != job.generation:
        metrics.JOBS.labels("embed_document", "stale").inc()
        return  # deleted or re-ingested since: the newer job does the work
    docs.transition(job.doc_key, DocumentStatus.PROCESSING.value)
    s = res.settings
    index_job = core.embed_document(res.encoder, job, chunk_size=s.ingest_chunk_size,
                                    chunk_overlap=s.ingest_chunk_overlap,
                                    batch_size=s.embedding_batch_size)
    metrics.JOBS.labels("embed_document", "ok").inc()
    enqueue(res.connection, Tasks.INDEX_DOCUMENT, index_job, job_timeout=s.stage_timeout)
