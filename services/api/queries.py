"""Handlers for /v1/queries: submit, poll (optionally waiting), cancel."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from services.api.body import check_text, int_param, json_body
from services.api.errors import ApiError
from services.api.state import OWNER, QUERIES, REDIS, SETTINGS
from shared.jobs import (
    TERMINAL_QUERY,
    EmbedQueryJob,
    ErrorInfo,
    QueryParams,
    QueryRequest,
    QueryStatus,
    Tasks,
)
from shared.queue import enqueue

routes = web.RouteTableDef()
MAX_WAIT_S = 30


def _not_found(query_id: str) -> ApiError:
    # The same answer for a missing id and for someone else's: ids reveal nothing.
    return ApiError(404, "query_not_found", f"no query {query_id!r}")


@routes.post("/v1/queries")
async def submit(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    body = await json_body(request, QueryRequest)
    question = check_text("question", body.question, settings.query_max_question_chars)
    top_k = body.top_k or settings.retrieval_top_k
    if top_k > settings.retrieval_max_top_k:
        raise ApiError(422, "invalid_request",
                       f"top_k: must be at most {settings.retrieval_max_top_k}")
    params = QueryParams(
        top_k=top_k,
        collection=body.collection or settings.vectorstore_collection,
        max_tokens=body.max_tokens or settings.generator_max_tokens,
        temperature=settings.generator_temperature if body.temperature is None
        else body.temperature)
    queries = request.app[QUERIES]
    query_id = await asyncio.to_thread(queries.create, request[OWNER], question, params,
                                       settings.query_deadline)
    job = EmbedQueryJob(query_id=query_id, question=question, params=params)
    try:
        await asyncio.to_thread(enqueue, request.app[REDIS], Tasks.EMBED_QUERY, job,
                                job_timeout=settings.stage_timeout)
    except Exception:
        # Never leave an accepted-looking record behind a job that was not queued.
        await asyncio.to_thread(queries.finish, query_id, QueryStatus.FAILED,
                                ErrorInfo(code="enqueue_failed", message="could not queue"))
        raise
    location = f"/v1/queries/{query_id}"
    return web.json_response({"id": query_id, "status": QueryStatus.QUEUED.value},
                             status=202, headers={"Location": location})


async def _read(request: web.Request, query_id: str) -> dict[str, Any]:
    queries = request.app[QUERIES]
    view = await asyncio.to_thread(queries.get, query_id, request[OWNER])
    if view is None:
        raise _not_found(query_id)
    if view["status"] not in TERMINAL_QUERY and await asyncio.to_thread(
            queries.expire_if_overdue, query_id):
        view = await asyncio.to_thread(queries.get, query_id, request[OWNER])
        assert view is not None
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
