"""RQ entry points of the retriever: search, index and delete document chunks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from services.retriever import core
from services.retriever.retry import VectorStoreUnavailable
from services.retriever.store import MilvusStore
from shared import metrics, stages
from shared.jobs import (
    DeleteDocumentJob,
    DocumentStatus,
    ErrorInfo,
    GenerateJob,
    IndexDocumentJob,
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
    store: MilvusStore

    @property
    def queries(self) -> QueryRecords:
        return QueryRecords(self.connection, self.settings.query_result_ttl)

    @property
    def documents(self) -> DocumentRecords:
        return DocumentRecords(self.connection, self.settings.query_result_ttl)


_resources: Resources | None = None


def setup(resources: Resources) -> None:
    global _resources
    _resources = resources


def _res() -> Resources:
    if _resources is None:
        raise RuntimeError("retriever not set up: start it with `python -m services.retriever`")
    return _resources


def retrieve(payload: dict[str, Any]) -> None:
    job = RetrieveJob.model_validate(payload)
    res = _res()
    started = stages.start(res.queries, job.query_id, "retrieve", QueryStatus.RETRIEVING,
                           carried=job.timings_ms)
    if started is None:
        return
    try:
        chunks = core.retrieve(res.store, job.params.collection, job.vector, job.params.top_k,
                               res.settings.retrieval_score_threshold)
    except VectorStoreUnavailable as exc:
        stages.done("retrieve", started, "vectorstore_unavailable")
        res.queries.finish(job.query_id, QueryStatus.FAILED, unavailable(exc))
        metrics.QUERIES.labels(QueryStatus.FAILED.value).inc()
        return
    took = stages.done("retrieve", started)
    # From here the query waits for a generation slot, for at most the queue timeout.
    with res.connection.pipeline() as pipe:
        pipe.multi()
        deadline = res.queries.wait_for_generation(
            job.query_id, res.settings.generator_queue_timeout, pipe, t_retrieve=took * 1000)
        if deadline is not None:
            next_job = GenerateJob(query_id=job.query_id, question=job.question,
                                   params=job.params, chunks=chunks, queue_deadline=deadline)
            enqueue(res.connection, Tasks.GENERATE, next_job,
                    job_timeout=res.settings.generate_job_timeout, pipeline=pipe)
            pipe.execute()


def unavailable(exc: VectorStoreUnavailable) -> ErrorInfo:
    return ErrorInfo(code="vectorstore_unavailable", message=f"the vector store stayed "
                     f"unreachable; submit it again shortly ({exc})"[:500])


def index_document(payload: dict[str, Any]) -> None:
    job = IndexDocumentJob.model_validate(payload)
    res, docs = _res(), _res().documents
    if docs.generation(job.doc_key) != job.generation:
        metrics.JOBS.labels("index_document", "stale").inc()
        return
    try:
        res.store.delete_document(job.stale_collections, job.doc_key)
        count = res.store.replace_document(job.collection, job.doc_key, job.document_id,
                                           job.source, job.chunks)
    except VectorStoreUnavailable as exc:
        docs.transition(job.doc_key, DocumentStatus.FAILED.value,
                        error=unavailable(exc).model_dump())
        metrics.DOCUMENTS.labels("failed").inc()
        metrics.JOBS.labels("index_document", "vectorstore_unavailable").inc()
        return
    if docs.generation(job.doc_key) is None:
        # Deleted while we were writing: take our chunks back out.
        res.store.delete_document([job.collection], job.doc_key)
        return
    docs.transition(job.doc_key, DocumentStatus.INDEXED.value, chunks=count)
    metrics.CHUNKS_INDEXED.inc(count)
    metrics.DOCUMENTS.labels("indexed").inc()
    metrics.JOBS.labels("index_document", "ok").inc()


def delete_document(payload: dict[str, Any]) -> None:
    job = DeleteDocumentJob.model_validate(payload)
    _res().store.delete_document(job.collections, job.doc_key)
    metrics.JOBS.labels("delete_document", "ok").inc()
