"""GET /v1/queries/{id}/events: Server-Sent Events of a query — status changes, answer tokens
as they are generated, and a final event with the full result.

Events come from the query's Redis stream, and each SSE id is the stream entry's id: a client
that reconnects with Last-Event-ID resumes exactly after what it saw, with nothing lost and
nothing repeated.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import redis
from aiohttp import web

from services.api.errors import ApiError
from services.api.queries import find
from services.api.state import AREDIS, OWNER, QUERIES
from shared.jobs import TERMINAL_QUERY
from shared.logging import get_logger

routes = web.RouteTableDef()
log = get_logger(__name__)

_EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
BLOCK_MS = 5000  # then a keep-alive comment, and a look at the query's deadline


def _sse(event_id: str, event: str, data: dict[str, Any]) -> bytes:
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _decode(fields: dict[bytes, bytes]) -> tuple[str, dict[str, Any]]:
    kind = fields[b"type"].decode()
    if kind == "delta":
        return "delta", {"text": fields[b"text"].decode()}
    return "status", {"status": fields[b"status"].decode()}


@routes.get("/v1/queries/{id}/events")
async def events(request: web.Request) -> web.StreamResponse:
    query_id = request.match_info["id"]
    await find(request, query_id)
    last = request.headers.get("Last-Event-ID") or request.query.get("last_event_id") or "0-0"
    if not _EVENT_ID.match(last):
        raise ApiError(422, "invalid_request", "Last-Event-ID: not an event id of this stream")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    try:
        return await _stream(request, response, query_id, last)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        # Past the headers an error status can no longer be sent: say so in the stream and
        # end it; the client reconnects with Last-Event-ID and misses nothing.
        log.warning("events_redis_unavailable", error=str(exc))
        error = {"code": "queue_unavailable", "message": "the job store is unreachable; "
                 "reconnect shortly with Last-Event-ID"}
        await response.write(f"event: error\ndata: {json.dumps({'error': error})}\n\n".encode())
        await response.write_eof()
        return response


async def _stream(request: web.Request, response: web.StreamResponse, query_id: str,
                  last: str) -> web.StreamResponse:
    queries, owner = request.app[QUERIES], request[OWNER]
    stream, key = request.app[AREDIS], queries.events_key(query_id)
    block: int | None = None  # the first read does not wait: a finished query ends at once
    while True:
        batches = await stream.xread({key: last}, count=500, block=block)
        block = BLOCK_MS
        for _, entries in batches:
            for entry_id, fields in entries:
                last = entry_id.decode()
                kind, data = _decode(fields)
                await response.write(_sse(last, kind, data))
                if kind == "status" and data["status"] in TERMINAL_QUERY:
                    return await _final(response, queries, query_id, owner, last)
        if batches:
            continue
        await asyncio.to_thread(queries.expire_if_overdue, query_id)  # its event comes next
        view = await asyncio.to_thread(queries.get, query_id, owner)
        if view is None or view["status"] in TERMINAL_QUERY:
            return await _final(response, queries, query_id, owner, last)
        await response.write(b": keep-alive\n\n")


async def _final(response: web.StreamResponse, queries: Any, query_id: str, owner: str,
                 last: str) -> web.StreamResponse:
    view = await asyncio.to_thread(queries.get, query_id, owner)
    if view is not None:
        await response.write(_sse(last, "final", view))
    await response.write_eof()
    return response
