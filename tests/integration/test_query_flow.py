"""Questions and documents through the real stages: Valkey + RQ, MiniLM, Milvus Lite, vLLM."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import FormData

from services.api.app import create_app
from services.generator.prompt import NO_CONTEXT_ANSWER
from shared.records import DocumentRecords, owner_of
from tests.conftest import KEY_A, KEY_B, ROOT

pytestmark = pytest.mark.integration

A = {"Authorization": f"Bearer {KEY_A}"}
B = {"Authorization": f"Bearer {KEY_B}"}
HANDBOOK = ROOT / "examples" / "handbook"

LEAVE = ("Annual leave. Every full-time employee receives 27 days of paid annual leave per "
         "year, plus public holidays. Up to 5 unused days may be carried over to next year.")
EXPENSES = ("Travel expenses. Hotels in London are capped at 245 pounds per night. Receipts are "
            "required for any claim over 20 pounds. Claims must be filed within 45 days.")


@pytest.fixture
async def api(aiohttp_client, workers):  # type: ignore[no-untyped-def]
    return await aiohttp_client(create_app(workers.settings))


async def _drain(workers) -> None:  # type: ignore[no-untyped-def]
    await asyncio.to_thread(workers.drain)


async def _ingest_text(api, workers, text: str, source: str, **extra) -> dict:  # type: ignore[no-untyped-def]
    resp = await api.post("/v1/documents", json={"text": text, "source": source, **extra},
                          headers=A)
    assert resp.status == 202, await resp.text()
    document_id = (await resp.json())["id"]
    await _drain(workers)
    doc = await (await api.get(f"/v1/documents/{document_id}", headers=A)).json()
    assert doc["status"] == "indexed", doc
    return doc


async def _ask(api, workers, question: str, headers=A, **params) -> dict:  # type: ignore[no-untyped-def]
    resp = await api.post("/v1/queries", json={"question": question, **params}, headers=headers)
    assert resp.status == 202, await resp.text()
    await _drain(workers)
    return await (await api.get(resp.headers["Location"], headers=headers)).json()


async def test_question_is_answered_from_the_right_document(api, workers):
    await _ingest_text(api, workers, LEAVE, "leave-policy.md")
    await _ingest_text(api, workers, EXPENSES, "expenses.html")
    view = await _ask(api, workers, "What is the nightly hotel limit in London?")
    assert view["status"] == "succeeded", view
    assert view["citations"][0]["source"] == "expenses.html"
    assert view["citations"][0]["score"] > view["citations"][-1]["score"] or \
        len(view["citations"]) == 1
    assert "245" in view["citations"][0]["text"]
    assert [c["index"] for c in view["citations"]] == list(range(1, len(view["citations"]) + 1))
    assert isinstance(view["answer"], str)
    assert view["usage"]["prompt_tokens"] > 50 and view["usage"]["completion_tokens"] > 0
    for stage in ("embed", "retrieve", "generate", "embed_queued", "total"):
        assert view["timings_ms"][stage] >= 0
    assert view["timings_ms"]["total"] >= view["timings_ms"]["generate"]
    assert view["finished_at"] >= view["created_at"]


async def test_nothing_relevant_says_so_and_cites_nothing(api, workers):
    view = await _ask(api, workers, "What is the capital of Peru?", collection="empty_kb")
    assert view["status"] == "succeeded"
    assert view["answer"] == NO_CONTEXT_ANSWER
    assert view["citations"] == [] and view["usage"]["completion_tokens"] == 0


async def test_irrelevant_chunks_fall_below_the_threshold(api, workers):
    await _ingest_text(api, workers, LEAVE, "leave-policy.md")
    view = await _ask(api, workers, "Explain the rules of cricket's lbw law in detail.")
    assert view["answer"] == NO_CONTEXT_ANSWER and view["citations"] == []


async def test_reingesting_a_document_replaces_its_chunks(api, workers):
    long_text = "\n\n".join(f"Section {i}. " + LEAVE for i in range(6))
    first = await _ingest_text(api, workers, long_text, "leave-policy.md", document_id="leave")
    second = await _ingest_text(api, workers, EXPENSES, "leave-policy.md", document_id="leave")
    assert first["chunks"] > second["chunks"] == 1
    rows = workers.store.client.query(workers.settings.vectorstore_collection,
                                      filter='document_id == "leave"', output_fields=["text"])
    assert len(rows) == 1 and "245" in rows[0]["text"]
    listed = await (await api.get("/v1/documents", headers=A)).json()
    assert listed["total"] == 1


async def test_deleting_a_document_removes_its_chunks_from_answers(api, workers):
    await _ingest_text(api, workers, EXPENSES, "expenses.html", document_id="exp")
    resp = await api.delete("/v1/documents/exp", headers=A)
    assert resp.status == 200 and (await resp.json())["status"] == "deleted"
    await _drain(workers)
    assert (await api.get("/v1/documents/exp", headers=A)).status == 404
    view = await _ask(api, workers, "What is the nightly hotel limit in London?")
    assert view["citations"] == []


async def test_same_document_id_under_two_keys_does_not_collide(api, workers, redis_client):
    await _ingest_text(api, workers, LEAVE, "leave-policy.md", document_id="policy")
    resp = await api.post("/v1/documents", json={"text": EXPENSES, "source": "exp.html",
                                                 "document_id": "policy"}, headers=B)
    assert resp.status == 202
    await _drain(workers)
    docs = DocumentRecords(redis_client, 60)
    assert docs.get(owner_of(KEY_A), "policy")["source"] == "leave-policy.md"
    rows = workers.store.client.query(workers.settings.vectorstore_collection,
                                      filter='document_id == "policy"', output_fields=["source"])
    assert sorted(r["source"] for r in rows) == ["exp.html", "leave-policy.md"]


@pytest.mark.parametrize("name", ["security-policy.pdf", "expenses.html", "it-help.txt",
                                  "leave-policy.md"])
async def test_uploaded_files_of_each_format_are_indexed(api, workers, name):
    form = FormData()
    form.add_field("file", (HANDBOOK / name).read_bytes(), filename=name)
    resp = await api.post("/v1/documents", data=form, headers=A)
    assert resp.status == 202, await resp.text()
    body = await resp.json()
    assert body["source"] == name
    await _drain(workers)
    doc = await (await api.get(f"/v1/documents/{body['id']}", headers=A)).json()
    assert doc["status"] == "indexed" and doc["chunks"] >= 2


async def test_a_query_cancelled_before_its_turn_is_never_generated(api, workers):
    await _ingest_text(api, workers, LEAVE, "leave-policy.md")
    resp = await api.post("/v1/queries", json={"question": "How many leave days?"}, headers=A)
    location = resp.headers["Location"]
    assert (await api.delete(location, headers=A)).status == 200
    await _drain(workers)
    view = await (await api.get(location, headers=A)).json()
    assert view["status"] == "cancelled" and view["answer"] is None
    assert "generate" not in view["timings_ms"]


async def test_wait_holds_the_request_until_the_query_ends(api, workers):
    await _ingest_text(api, workers, LEAVE, "leave-policy.md")
    resp = await api.post("/v1/queries", json={"question": "How many leave days?"}, headers=A)
    location = resp.headers["Location"]
    drained = asyncio.create_task(_drain(workers))
    view = await (await api.get(f"{location}?wait=30", headers=A)).json()
    await drained
    assert view["status"] == "succeeded"


async def test_unreachable_engine_fails_the_query_with_a_clear_code(api, workers,
                                                                   redis_client):
    from ragmesh.procs import free_port
    from services.generator import tasks as generator_tasks
    from services.generator.__main__ import build_pool

    await _ingest_text(api, workers, LEAVE, "leave-policy.md")
    dead = workers.settings.model_copy(update={
        "generator_engine_url": f"http://127.0.0.1:{free_port()}/v1", "generator_retries": 2,
        "generator_retry_backoff": 0.05})
    generator_tasks._res().pool = build_pool(dead, redis_client)
    generator_tasks._res().settings = dead
    view = await _ask(api, workers, "How many leave days?")
    assert view["status"] == "failed"
    assert view["error"]["code"] == "engine_unavailable"



async def test_a_stage_that_crashes_ends_the_query_failed_not_stuck(api, workers, redis_client):
    from shared.jobs import QueryParams, RetrieveJob, Tasks
    from shared.queue import enqueue
    from shared.records import QueryRecords

    await _ingest_text(api, workers, LEAVE, "leave-policy.md")
    queries = QueryRecords(redis_client, 60)
    params = QueryParams(top_k=3, collection=workers.settings.vectorstore_collection,
                         max_tokens=8, temperature=0)
    query_id = queries.create(owner_of(KEY_A), "q", params, deadline=60)
    # A vector of the wrong dimension, as after a change of embedding model: Milvus refuses.
    enqueue(redis_client, Tasks.RETRIEVE, RetrieveJob(query_id=query_id, question="q",
                                                      params=params, vector=[0.1, 0.2, 0.3]),
            job_timeout=30)
    await _drain(workers)
    view = await (await api.get(f"/v1/queries/{query_id}", headers=A)).json()
    assert view["status"] == "failed"
    assert view["error"]["code"] == "internal_error"
    assert "retrieve failed" in view["error"]["message"]
