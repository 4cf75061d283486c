"""The REST contract against the real app and a real Valkey: auth, isolation, bad input."""

from __future__ import annotations

import json

import pytest
from aiohttp import FormData

from services.api.app import create_app
from shared import health
from tests.conftest import KEY_A, KEY_B

pytestmark = pytest.mark.integration

A = {"Authorization": f"Bearer {KEY_A}"}
B = {"Authorization": f"Bearer {KEY_B}"}


@pytest.fixture
async def api(aiohttp_client, make_settings):  # type: ignore[no-untyped-def]
    return await aiohttp_client(create_app(make_settings(api_max_body_bytes=64 * 1024)))


async def _error(resp, status: int, code: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert set(body) == {"error"} and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    return body["error"]


async def _submit(api) -> str:  # type: ignore[no-untyped-def]
    resp = await api.post("/v1/queries", json={"question": "q"}, headers=A)
    return (await resp.json())["id"]


PROTECTED = [("POST", "/v1/queries"), ("GET", "/v1/queries/abc"), ("DELETE", "/v1/queries/abc"),
             ("GET", "/v1/queries/abc/events"),
             ("POST", "/v1/documents"), ("GET", "/v1/documents"), ("GET", "/v1/documents/x"),
             ("DELETE", "/v1/documents/x"), ("GET", "/openapi.json"), ("GET", "/metrics"),
             ("POST", "/v1/queries/abc/feedback"), ("GET", "/v1/review")]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": "Basic dGVzdA=="}])
async def test_every_endpoint_but_health_needs_a_valid_key(api, method, path, headers):
    resp = await api.request(method, path, headers=headers, json={"question": "hi"})
    await _error(resp, 401, "unauthorized")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_health_needs_no_key(api):
    assert (await api.get("/healthz")).status == 200
    assert (await api.get("/readyz")).status in (200, 503)


async def test_submit_answers_202_with_id_and_location(api):
    resp = await api.post("/v1/queries", json={"question": "How many leave days?"}, headers=A)
    assert resp.status == 202
    body = await resp.json()
    assert body["status"] == "queued"
    assert resp.headers["Location"] == f"/v1/queries/{body['id']}"
    view = await (await api.get(resp.headers["Location"], headers=A)).json()
    assert view["status"] == "queued" and view["question"] == "How many leave days?"
    assert view["citations"] == [] and view["error"] is None and "total" in view["timings_ms"]


async def test_queries_and_documents_are_invisible_to_other_keys(api):
    query_id = await _submit(api)
    foreign = await _error(await api.get(f"/v1/queries/{query_id}", headers=B), 404)
    missing = await _error(await api.get("/v1/queries/" + "0" * 32, headers=B), 404)
    assert foreign["code"] == missing["code"] == "query_not_found"
    await _error(await api.delete(f"/v1/queries/{query_id}", headers=B), 404)
    assert (await api.get(f"/v1/queries/{query_id}", headers=A)).status == 200

    doc = {"text": "Secret plans.", "source": "plans.txt", "document_id": "plans"}
    assert (await api.post("/v1/documents", json=doc, headers=A)).status == 202
    await _error(await api.get("/v1/documents/plans", headers=B), 404, "document_not_found")
    await _error(await api.delete("/v1/documents/plans", headers=B), 404)
    listed = await (await api.get("/v1/documents", headers=B)).json()
    assert listed["documents"] == [] and listed["total"] == 0
    mine = await (await api.get("/v1/documents", headers=A)).json()
    assert [d["id"] for d in mine["documents"]] == ["plans"]


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"question": ""}, 422, "invalid_request"),
    ({"question": "   \n"}, 422, "invalid_request"),
    ({"question": "x" * 4001}, 422, "invalid_request"),
    ({"question": "a\x00b"}, 422, "invalid_request"),
    ({"question": "ok", "top_k": 0}, 422, "invalid_request"),
    ({"question": "ok", "top_k": 1000}, 422, "invalid_request"),
    ({"question": "ok", "top_k": "five"}, 422, "invalid_request"),
    ({"question": "ok", "colour": "blue"}, 422, "invalid_request"),
    ({"question": "ok", "collection": "bad name!"}, 422, "invalid_request"),
    ({"question": "ok", "temperature": 9}, 422, "invalid_request"),
    ({}, 422, "invalid_request"),
    ([1, 2], 422, "invalid_request"),
])
async def test_bad_questions_get_a_clear_4xx(api, body, status, code):
    error = await _error(await api.post("/v1/queries", json=body, headers=A), status, code)
    assert error["message"]


async def test_malformed_json_is_400(api):
    resp = await api.post("/v1/queries", data=b'{"question": ', headers={
        **A, "Content-Type": "application/json"})
    await _error(resp, 400, "malformed_json")


async def test_wrong_content_type_is_415(api):
    resp = await api.post("/v1/queries", data=b"question=hi", headers={
        **A, "Content-Type": "application/x-www-form-urlencoded"})
    await _error(resp, 415)


async def test_body_over_the_limit_is_413(api):
    resp = await api.post("/v1/documents", json={"text": "x" * 100_000, "source": "big.txt"},
                          headers=A)
    await _error(resp, 413, "payload_too_large")


async def test_upload_over_the_limit_is_413(api):
    form = FormData()
    form.add_field("file", b"word " * 30_000, filename="big.txt")
    await _error(await api.post("/v1/documents", data=form, headers=A), 413)


async def test_unsupported_file_type_is_415(api):
    form = FormData()
    form.add_field("file", b"MZ\x90\x00", filename="tool.exe")
    await _error(await api.post("/v1/documents", data=form, headers=A), 415,
                 "unsupported_file_type")


async def test_unreadable_pdf_is_422(api):
    form = FormData()
    form.add_field("file", b"%PDF-1.4 this is not really a pdf", filename="broken.pdf")
    await _error(await api.post("/v1/documents", data=form, headers=A), 422, "unreadable_file")


@pytest.mark.parametrize("body", [
    {"text": "", "source": "a.txt"}, {"text": "hi"}, {"text": "hi", "source": "a",
                                                       "document_id": "../etc"},
    {"text": "hi", "source": "a", "metadata": {"k": [1]}}])
async def test_bad_documents_get_422(api, body):
    await _error(await api.post("/v1/documents", json=body, headers=A), 422)


@pytest.mark.parametrize("wait", ["31", "-1", "soon"])
async def test_wait_out_of_range_is_422(api, wait):
    query_id = await _submit(api)
    await _error(await api.get(f"/v1/queries/{query_id}?wait={wait}", headers=A), 422)


async def test_unknown_route_and_method_are_json_errors(api):
    await _error(await api.get("/v2/nothing", headers=A), 404)
    await _error(await api.put("/v1/queries", headers=A), 405)


async def test_cancel_a_queued_query_then_cancel_again_is_409(api):
    query_id = await _submit(api)
    resp = await api.delete(f"/v1/queries/{query_id}", headers=A)
    assert resp.status == 200
    assert (await resp.json())["status"] == "cancelled"
    await _error(await api.delete(f"/v1/queries/{query_id}", headers=A), 409, "query_finished")


async def test_overdue_query_ends_timed_out_instead_of_staying_queued(aiohttp_client,
                                                                      make_settings):
    import asyncio

    api = await aiohttp_client(create_app(make_settings(query_deadline=0.3)))
    query_id = await _submit(api)
    await asyncio.sleep(0.5)
    view = await (await api.get(f"/v1/queries/{query_id}", headers=A)).json()
    assert view["status"] == "timed_out"
    assert view["error"]["code"] == "deadline_exceeded"


async def test_readyz_reports_each_missing_stage_then_ready(api, redis_client):
    resp = await api.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["checks"]["redis"] == "ok"
    assert "no worker listening" in body["checks"]["embedder"]
    assert body["error"]["code"] == "not_ready"
    for service in ("embedder", "retriever", "generator"):
        health.publish(redis_client, service, f"{service}-1", True, "ok", ttl=30)
    assert (await api.get("/readyz")).status == 200
    health.publish(redis_client, "generator", "generator-1", False, "engine unreachable", ttl=30)
    body = await (await api.get("/readyz")).json()
    assert "engine unreachable" in body["checks"]["generator"]


async def test_openapi_describes_every_endpoint_and_the_security_scheme(api):
    spec = await (await api.get("/openapi.json", headers=A)).json()
    assert spec["openapi"].startswith("3.")
    assert {"/v1/queries", "/v1/queries/{id}", "/v1/queries/{id}/feedback", "/v1/review",
            "/v1/documents", "/v1/documents/{id}", "/healthz", "/readyz"} <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert spec["security"] == [{"bearerAuth": []}]
    json.dumps(spec)  # serialisable, every $ref resolvable below
    refs = {v.split("/")[-1] for v in _walk(spec) if isinstance(v, str) and v.startswith("#/")}
    assert refs <= set(spec["components"]["schemas"])


def _walk(node):  # type: ignore[no-untyped-def]
    if isinstance(node, dict):
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)
    else:
        yield node
