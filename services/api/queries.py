"""Handlers for /v1/queries: submit, poll (optionally waiting), cancel."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from aiohttp import web

from services.api import durable, idempotency
from services.api.body import check_text, int_param, json_body
from services.api.errors import ApiError
from services.api.limits import refuse_if_overloaded
from services.api.state import OWNER, QUERIES, REDIS, SETTINGS
from shared.jobs import (
    QUERY_ID_PATTERN,
    TERMINAL_QUERY,
    EmbedQueryJob,
    ErrorInfo,
    QueryParams,
    QueryRequest,
    QueryStatus,
    Tasks,
)
from shared.queue import enqueue
from shared.settings import Settings

routes = web.RouteTableDef()
MAX_WAIT_S = 30
# A question is at most query_max_question_chars (4000 by default) characters, 4 bytes each
# at worst, escaped or not: a query's body never needs more.
QUERY_BODY_BYTES = 64 * 1024
_QUERY_ID = re.compile(QUERY_ID_PATTERN)


async def not_found(request: web.Request, query_id: str) -> ApiError:
    """The same answer for a missing id and for someone else's: ids reveal nothing. Only the
    owner of a query whose record expired is told so."""
    if _QUERY_ID.match(query_id) and await asyncio.to_thread(
            request.app[QUERIES].expired_for, query_id, request[OWNER]):
        return ApiError(404, "query_expired", f"query {query_id!r} ended and its result was "
                        "deleted after the retention period")
    return ApiError(404, "query_not_found", f"no query {query_id!r}")


async def find(request: web.Request, query_id: str) -> dict[str, Any]:
    """The owner's view of a query, or 404 (an id that cannot be one never reaches Redis)."""
    view = None
    if _QUERY_ID.match(query_id):
        view = await asyncio.to_thread(request.app[QUERIES].get, query_id, request[OWNER])
    if view is None:
        raise await not_found(request, query_id)
    return view


def _params(body: QueryRequest, settings: Settings) -> QueryParams:
    top_k = body.top_k or settings.retrieval_top_k
    if top_k > settings.retrieval_max_top_k:
        raise ApiError(422, "invalid_request",
                       f"top_k: must be at most {settings.retrieval_max_top_k}")
    return QueryParams(
        top_k=top_k,
        collection=body.collection or settings.vectorstore_collection,
        max_tokens=body.max_tokens or settings.generator_max_tokens,
        temperature=settings.generator_temperature if body.temperature is None
        else body.temperature)


@routes.post("/v1/queries")
async def submit(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    body = await json_body(request, QueryRequest, QUERY_BODY_BYTES)
    question = check_text("question", body.question, settings.query_max_question_chars)
    params = _params(body, settings)
    response = await idempotency.once(request, body, lambda: _create(request, question, params))
    return await durable.confirm(request, response)


async def _create(request: web.Request, question: str, params: QueryParams) -> web.Response:
    await refuse_if_overloaded(request)
    settings, queries, client = request.app[SETTINGS], request.app[QUERIES], request.app[REDIS]
    owner = request[OWNER]

    def create() -> str:
        # The record and its first job in one transaction: never one without the other.
        with client.pipeline() as pipe:
            pipe.multi()
            query_id = queries.create(owner, question, params, settings.query_deadline, pipe)
            job = EmbedQueryJob(query_id=query_id, question=question, params=params)
            enqueue(client, Tasks.EMBED_QUERY, job, job_timeout=settings.stage_timeout,
                    pipeline=pipe)
            pipe.execute()
        return query_id

    query_id = await asyncio.to_thread(create)
    location = f"/v1/queries/{query_id}"
    return web.json_response({"id": query_id, "status": QueryStatus.QUEUED.value},
                             status=202, headers={"Location": location})


async def _read(request: web.Request, query_id: str) -> dict[str, Any]:
    view = await find(request, query_id)
    if view["status"] not in TERMINAL_QUERY and await asyncio.to_thread(
            request.app[QUERIES].expire_if_overdue, query_id):
        view = await find(request, query_id)
    return view


@routes.get("/v1/queries/{id}")
async def fetch(request: web.Request) -> web.Response:
    query_id = request.match_info["id"]
    wait = int_param(request, "wait", 0, 0, MAX_WAIT_S)
    view = await _read(request, query_id)
    until = time.monotonic() + wait
    pause = 0.05
    while view["status"] not in TERMINAL_QUERY and time.monotonic() < until:
        await asyncio.sleep(min(pause, max(0.0, until - time.monotonic())))
        pause = min(pause * 1.5, 0.5)
        view = await _read(request, query_id)
    return web.json_response(view)


@routes.delete("/v1/queries/{id}")
async def cancel(request: web.Request) -> web.Response:
    query_id = request.match_info["id"]
    queries = request.app[QUERIES]
    view = await _read(request, query_id)
    if view["status"] in TERMINAL_QUERY:
        raise ApiError(409, "query_finished",
                       f"query {query_id!r} already ended as {view['status']}")
    applied = await asyncio.to_thread(
        queries.finish, query_id, QueryStatus.CANCELLED,
        ErrorInfo(code="cancelled", message="cancelled by the client"))
    view = await _read(request, query_id)
    if not applied:  # it ended while we were looking
        raise ApiError(409, "query_finished",
                       f"query {query_id!r} already ended as {view['status']}")
    return web.json_response(view)
