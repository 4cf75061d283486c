"""Dynamic batching through a real embedder: `python -m services.embedder` (the bundled
MiniLM, several lanes) on a real Valkey. Jobs that wait together are encoded together, and
each gets the vector it would have got alone."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from rq.job import Job
from rq.serializers import JSONSerializer

from ragmesh.procs import Proc, free_port, wait_until
from services.embedder.chunking import chunk_text
from services.embedder.core import embed
from shared import health
from shared.jobs import (
    EmbedDocumentJob,
    EmbedQueryJob,
    IndexDocumentJob,
    QueryParams,
    Queues,
    RetrieveJob,
    Tasks,
)
from shared.queue import enqueue, queue
from shared.records import DocumentRecords, QueryRecords, owner_of
from tests.conftest import KEY_A, ROOT

pytestmark = pytest.mark.integration

PARAMS = QueryParams(top_k=3, collection="handbook", max_tokens=8, temperature=0)
OWNER = owner_of(KEY_A)
QUESTIONS = [f"{q} (variant {i})" for i in range(4) for q in (
    "How many days of annual leave do I get?", "What is the hotel cap in London?",
    "How do I reset my password?", "Who approves remote work abroad?")]


@pytest.fixture
def embedder(redis_url: str, tmp_path: Path) -> Iterator[int]:
    """A real embedder process with 8 lanes; yields its metrics port."""
    port = free_port()
    env = {"RAGMESH_REDIS_URL": redis_url, "RAGMESH_EMBEDDING_LANES": "8",
           "RAGMESH_EMBEDDING_BATCH_SIZE": "32", "RAGMESH_EMBEDDING_BATCH_CHARS": "4000",
           "RAGMESH_METRICS_PORT": str(port), "RAGMESH_WORKER_HEARTBEAT": "1",
           "RAGMESH_STATE_DIR": str(tmp_path), "RAGMESH_LOG_JSON": "true"}
    proc = Proc("embedder", [sys.executable, "-m", "services.embedder"],
                tmp_path / "embedder.log", env, cwd=ROOT).start()
    client = redis.Redis.from_url(redis_url)
    try:
        wait_until(lambda: bool(health.workers(client, "embedder")), 180, "embedder", [proc])
        yield port
    finally:
        client.close()
        proc.stop(grace=20)


def batches(port: int) -> tuple[float, float, dict[float, float]]:
    """(texts, encode calls, calls of at most `le` texts by `le`) the worker reports."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples
               if s.name.startswith("ragmesh_embed_batch_texts")]
    values = {s.name: s.value for s in samples}
    buckets = {float(s.labels["le"]): s.value for s in samples if s.name.endswith("_bucket")}
    return values["ragmesh_embed_batch_texts_sum"], values["ragmesh_embed_batch_texts_count"], \
        buckets


def handed_on(client: redis.Redis, count: int) -> list[dict]:
    """The payloads the embedder handed to the retriever, once there are `count`, as the
    retriever reads them (vectors cross Redis as base64)."""
    retrieve = queue(client, Queues.RETRIEVE)
    wait_until(lambda: retrieve.count >= count, 180, "jobs handed on")
    payloads = [Job.fetch(job_id, connection=client, serializer=JSONSerializer).args[0]
                for job_id in retrieve.job_ids]
    return [(IndexDocumentJob if "chunks" in p else RetrieveJob).model_validate(p).model_dump()
            for p in payloads]


def test_questions_that_wait_together_are_encoded_together(embedder, redis_client, encoder):
    queries = QueryRecords(redis_client, 3600)
    asked = {}
    for question in QUESTIONS:  # all queued before the lanes can take them one by one
        query_id = queries.create(OWNER, question, PARAMS, deadline=600)
        asked[query_id] = question
        enqueue(redis_client, Tasks.EMBED_QUERY,
                EmbedQueryJob(query_id=query_id, question=question, params=PARAMS),
                job_timeout=300)

    payloads = handed_on(redis_client, len(QUESTIONS))

    assert sorted(p["query_id"] for p in payloads) == sorted(asked)
    for p in payloads:  # each its own vector, as encoded alone, within float noise
        [alone] = embed(encoder, [asked[p["query_id"]]], 32)
        np.testing.assert_allclose(p["vector"], alone, atol=2e-5)
        # The stage's bookkeeping was done: its start on the record, its time with the job.
        assert "w_embed" in queries.raw(p["query_id"]) and p["timings_ms"]["embed"] > 0
    texts, calls, by_size = batches(embedder)
    assert texts == len(QUESTIONS)
    assert calls < len(QUESTIONS), "no two questions shared an encode call"
    assert by_size[1.0] < calls  # some call held more than one question


def test_a_document_and_questions_share_the_model_in_budget_sized_calls(embedder, redis_client,
                                                                         encoder):
    text = (ROOT / "examples" / "handbook" / "leave-policy.md").read_text()
    chunks = chunk_text(text, 300, 120)
    docs = DocumentRecords(redis_client, 3600)
    doc_key, generation, _ = docs.upsert(OWNER, "leave", "leave-policy.md", "handbook",
                                         len(text), {})
    enqueue(redis_client, Tasks.EMBED_DOCUMENT, EmbedDocumentJob(
        doc_key=doc_key, generation=generation, document_id="leave", owner=OWNER,
        source="leave-policy.md", collection="handbook", text=text), job_timeout=300)
    queries = QueryRecords(redis_client, 3600)
    for question in QUESTIONS[:4]:
        query_id = queries.create(OWNER, question, PARAMS, deadline=600)
        enqueue(redis_client, Tasks.EMBED_QUERY,
                EmbedQueryJob(query_id=query_id, question=question, params=PARAMS),
                job_timeout=300)

    payloads = handed_on(redis_client, 5)

    [document] = [p for p in payloads if "chunks" in p]
    assert [c["text"] for c in document["chunks"]] == chunks
    alone = embed(encoder, chunks, 32)
    np.testing.assert_allclose([c["vector"] for c in document["chunks"]], alone, atol=2e-5)
    texts, calls, by_size = batches(embedder)
    assert texts == len(chunks) + 4
    # At most 4000 characters a call: the document went in pieces of a dozen chunks or so.
    assert len(chunks) > 24 and by_size[24.0] == calls
