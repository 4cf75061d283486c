"""Overload and abuse limits against the real app and a real Valkey: the per-key rate limit,
the queue-depth cap, Idempotency-Key, and the retention of finished queries."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import FormData

from services.api.app import create_app
from shared import metrics
from shared.jobs import ErrorInfo, QueryStatus, Queues
from shared.queue import queue
from shared.records import QueryRecords
from tests.conftest import KEY_A, KEY_B

pytestmark = pytest.mark.integration

A = {"Authorization": f"Bearer {KEY_A}"}
B = {"Authorization": f"Bearer {KEY_B}"}


async def _error(resp, status: int, code: str) -> dict:  # type: ignore[no-untyped-def]
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert body["error"]["code"] == code, body
    return body["error"]


def _embed_queue_count(redis_client) -> int:  # type: ignore[no-untyped-def]
    return queue(redis_client, Queues.EMBED).count


# --- rate limit ---------------------------------------------------------------------------------

async def test_a_key_past_its_burst_gets_429_rate_limited_and_others_do_not(aiohttp_client,
                                                                            make_settings):
    api = await aiohttp_client(create_app(make_settings(api_rate_limit=0.5, api_rate_burst=3)))
    before = metrics.REJECTED.labels("rate_limited")._value.get()
    for _ in range(3):
        assert (await api.get("/v1/documents", headers=A)).status == 200
    resp = await api.get("/v1/documents", headers=A)
    await _error(resp, 429, "rate_limited")
    assert 1 <= int(resp.headers["Retry-After"]) <= 2
    await _error(await api.post("/v1/queries", json={"question": "hi"}, headers=A), 429,
                 "rate_limited")
    assert metrics.REJECTED.labels("rate_limited")._value.get() - before == 2
    # Another key has its own bucket; health checks and the scrape are never limited.
    assert (await api.get("/v1/documents", headers=B)).status == 200
    assert (await api.get("/healthz")).status == 200
    assert (await api.get("/metrics", headers=A)).status == 200


async def test_the_bucket_refills_at_the_configured_rate(aiohttp_client, make_settings):
    api = await aiohttp_client(create_app(make_settings(api_rate_limit=20, api_rate_burst=1)))
    assert (await api.get("/v1/documents", headers=A)).status == 200
    resp = await api.get("/v1/documents", headers=A)
    if resp.status == 429:  # unless the machine was slow enough for a token to come back
        assert resp.headers["Retry-After"] == "1"
    await asyncio.sleep(0.2)  # four tokens' time at 20/s; the bucket holds one
    assert (await api.get("/v1/documents", headers=A)).status == 200


async def test_replicas_share_one_bucket_per_key(aiohttp_client, make_settings):
    settings = make_settings(api_rate_limit=0.5, api_rate_burst=2)
    one = await aiohttp_client(create_app(settings))
    two = await aiohttp_client(create_app(settings))
    assert (await one.get("/v1/documents", headers=A)).status == 200
    assert (await two.get("/v1/documents", headers=A)).status == 200
    await _error(await one.get("/v1/documents", headers=A), 429, "rate_limited")
    await _error(await two.get("/v1/documents", headers=A), 429, "rate_limited")


# --- overload -----------------------------------------------------------------------------------

async def test_past_the_queue_depth_new_work_gets_429_overloaded(aiohttp_client, make_settings,
                                                                 redis_client):
    api = await aiohttp_client(create_app(make_settings(api_max_queue_depth=3)))
    for i in range(3):  # no workers: every job stays queued
        resp = await api.post("/v1/queries", json={"question": f"q{i}"}, headers=A)
        assert resp.status == 202
    before = metrics.REJECTED.labels("overloaded")._value.get()
    resp = await api.post("/v1/queries", json={"question": "one too many"}, headers=B)
    await _error(resp, 429, "overloaded")
    assert int(resp.headers["Retry-After"]) >= 1
    doc = {"text": "Some text.", "source": "a.txt"}
    await _error(await api.post("/v1/documents", json=doc, headers=B), 429, "overloaded")
    assert metrics.REJECTED.labels("overloaded")._value.get() - before == 2
    assert _embed_queue_count(redis_client) == 3  # nothing was queued past the cap
    # Reading is never refused for load, and once the queue moves, work is accepted again.
    assert (await api.get("/v1/documents", headers=B)).status == 200
    queue(redis_client, Queues.EMBED).empty()
    assert (await api.post("/v1/queries", json={"question": "later"}, headers=B)).status == 202


async def test_queries_waiting_for_a_generation_slot_count_toward_the_depth(
        aiohttp_client, make_settings, redis_client):
    api = await aiohttp_client(create_app(make_settings(api_max_queue_depth=2)))
    redis_client.zadd(QueryRecords.waiting_key, {"a" * 32: time.time(), "b" * 32: time.time()})
    await _error(await api.post("/v1/queries", json={"question": "hi"}, headers=A), 429,
                 "overloaded")


# --- Idempotency-Key ----------------------------------------------------------------------------

async def test_a_retried_submission_returns_the_same_job(aiohttp_client, make_settings,
                                                         redis_client):
    api = await aiohttp_client(create_app(make_settings()))
    headers = {**A, "Idempotency-Key": "retry-1"}
    first = await api.post("/v1/queries", json={"question": "How long?"}, headers=headers)
    again = await api.post("/v1/queries", json={"question": "How long?"}, headers=headers)
    assert first.status == again.status == 202
    assert await first.json() == await again.json()
    assert first.headers["Location"] == again.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert _embed_queue_count(redis_client) == 1


async def test_the_same_key_with_another_body_is_refused(aiohttp_client, make_settings):
    api = await aiohttp_client(create_app(make_settings()))
    headers = {**A, "Idempotency-Key": "retry-2"}
    assert (await api.post("/v1/queries", json={"question": "a"}, headers=headers)).status == 202
    resp = await api.post("/v1/queries", json={"question": "b"}, headers=headers)
    await _error(resp, 422, "idempotency_key_reused")


async def test_idempotency_keys_are_scoped_per_api_key_and_per_route(aiohttp_client,
                                                                     make_settings,
                                                                     redis_client):
    api = await aiohttp_client(create_app(make_settings()))
    body = {"question": "same"}
    mine = await api.post("/v1/queries", json=body, headers={**A, "Idempotency-Key": "k"})
    theirs = await api.post("/v1/queries", json=body, headers={**B, "Idempotency-Key": "k"})
    assert (await mine.json())["id"] != (await theirs.json())["id"]
    doc = await api.post("/v1/documents", json={"text": "t", "source": "s.txt"},
                         headers={**A, "Idempotency-Key": "k"})
    assert doc.status == 202
    assert _embed_queue_count(redis_client) == 3


async def test_concurrent_retries_create_one_job(aiohttp_client, make_settings, redis_client):
    api = await aiohttp_client(create_app(make_settings()))
    headers = {**A, "Idempotency-Key": "storm"}

    async def post() -> tuple[int, str]:
        resp = await api.post("/v1/queries", json={"question": "once"}, headers=headers)
        return resp.status, (await resp.json())["id"]

    answers = await asyncio.gather(*(post() for _ in range(12)))
    assert {status for status, _ in answers} == {202}
    assert len({query_id for _, query_id in answers}) == 1
    assert _embed_queue_count(redis_client) == 1


async def test_a_retried_upload_with_a_new_boundary_is_the_same_document(
        aiohttp_client, make_settings, redis_client):
    api = await aiohttp_client(create_app(make_settings()))
    headers = {**A, "Idempotency-Key": "upload-1"}
    answers = []
    for _ in range(2):
        form = FormData()
        form.add_field("file", b"Leave is 27 days.", filename="leave.txt")
        resp = await api.post("/v1/documents", data=form, headers=headers)
        assert resp.status == 202, await resp.text()
        answers.append(await resp.json())
    assert answers[0] == answers[1]  # the generated document id too
    assert _embed_queue_count(redis_client) == 1


async def test_a_refused_request_releases_its_key(aiohttp_client, make_settings, redis_client):
    api = await aiohttp_client(create_app(make_settings(api_max_queue_depth=1)))
    assert (await api.post("/v1/queries", json={"question": "fill"}, headers=A)).status == 202
    headers = {**A, "Idempotency-Key": "after-overload"}
    await _error(await api.post("/v1/queries", json={"question": "x"}, headers=headers), 429,
                 "overloaded")
    queue(redis_client, Queues.EMBED).empty()
    resp = await api.post("/v1/queries", json={"question": "x"}, headers=headers)
    assert resp.status == 202 and "Idempotent-Replayed" not in resp.headers


@pytest.mark.parametrize("key", ["", "x" * 256, "with space", "ünï"])
async def test_a_malformed_idempotency_key_is_422(aiohttp_client, make_settings, key):
    api = await aiohttp_client(create_app(make_settings()))
    resp = await api.post("/v1/queries", json={"question": "q"},
                          headers={**A, "Idempotency-Key": key})
    await _error(resp, 422, "invalid_request")


async def test_the_key_is_remembered_for_the_configured_time(aiohttp_client, make_settings,
                                                             redis_client):
    api = await aiohttp_client(create_app(make_settings(api_idempotency_ttl=3600)))
    await api.post("/v1/queries", json={"question": "q"}, headers={**A, "Idempotency-Key": "t"})
    (key,) = redis_client.keys("ragmesh:idem:*")
    assert 3500 < redis_client.ttl(key) <= 3600


# --- retention ----------------------------------------------------------------------------------

async def _submit(api) -> str:  # type: ignore[no-untyped-def]
    resp = await api.post("/v1/queries", json={"question": "q"}, headers=A)
    return (await resp.json())["id"]


async def _gone(redis_client, query_id: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(100):  # expiry has one-second resolution
        if not redis_client.exists(f"ragmesh:q:{query_id}"):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the record did not expire")


async def test_an_expired_result_says_so_to_its_owner_only(aiohttp_client, make_settings,
                                                           redis_client):
    settings = make_settings(query_result_ttl=1)
    api = await aiohttp_client(create_app(settings))
    query_id = await _submit(api)
    records = QueryRecords(redis_client, settings.query_result_ttl)  # as a worker holds them
    assert records.finish(query_id, QueryStatus.SUCCEEDED, answer="27 days.")
    assert (await (await api.get(f"/v1/queries/{query_id}", headers=A)).json())["answer"]
    await _gone(redis_client, query_id)
    for method, path in [("GET", ""), ("DELETE", ""), ("GET", "/events")]:
        url = f"/v1/queries/{query_id}{path}"
        mine = await _error(await api.request(method, url, headers=A), 404, "query_expired")
        assert "retention" in mine["message"]
        await _error(await api.request(method, url, headers=B), 404, "query_not_found")
    await _error(await api.get("/v1/queries/" + "f" * 32, headers=A), 404, "query_not_found")


async def test_failed_queries_are_kept_for_their_own_time(aiohttp_client, make_settings,
                                                          redis_client):
    settings = make_settings(query_result_ttl=1, query_failed_ttl=600, query_tombstone_ttl=900)
    api = await aiohttp_client(create_app(settings))
    query_id = await _submit(api)
    QueryRecords(redis_client, 0).finish(query_id, QueryStatus.FAILED,  # as on_job_failure
                                         ErrorInfo(code="internal_error", message="boom"))
    assert 590 < redis_client.ttl(f"ragmesh:q:{query_id}") <= 600
    assert 590 < redis_client.ttl(f"ragmesh:q:{query_id}:events") <= 600
    assert 1490 < redis_client.ttl(f"ragmesh:q:{query_id}:gone") <= 1500
    await asyncio.sleep(1.5)
    view = await (await api.get(f"/v1/queries/{query_id}", headers=A)).json()
    assert view["status"] == "failed" and view["error"]["code"] == "internal_error"


async def test_a_cancelled_query_expires_with_the_failed_retention(aiohttp_client,
                                                                   make_settings,
                                                                   redis_client):
    api = await aiohttp_client(create_app(make_settings(query_failed_ttl=1)))
    query_id = await _submit(api)
    assert (await api.delete(f"/v1/queries/{query_id}", headers=A)).status == 200
    await _gone(redis_client, query_id)
    await _error(await api.get(f"/v1/queries/{query_id}", headers=A), 404, "query_expired")


async def test_an_unfinished_query_lives_past_its_deadline(aiohttp_client, make_settings,
                                                           redis_client):
    api = await aiohttp_client(create_app(make_settings(query_result_ttl=5, query_failed_ttl=9,
                                                        query_deadline=100)))
    query_id = await _submit(api)
    assert 100 < redis_client.ttl(f"ragmesh:q:{query_id}") <= 109
