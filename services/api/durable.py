"""An accepted job survives a Redis crash: 202 leaves only once Redis has it on disk.

A Redis that writes its append-only file once a second (`appendfsync everysec`, the usual
production setting) loses up to a second of writes when it is killed: a query the API had
answered 202 for would be gone. So the POSTs that create work wait, before answering, until
the AOF holds their writes (WAITAOF); when Redis cannot confirm it in time the answer is 503
and the client retries (with its Idempotency-Key it gets the first answer back).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from services.api.errors import ApiError
from services.api.state import REDIS, SETTINGS
from shared import metrics
from shared.queue import persisted


async def confirm(request: web.Request, response: web.Response) -> web.Response:
    """`response` (a 202) once its job is on disk, else 503 with Retry-After."""
    settings = request.app[SETTINGS]
    if response.status != 202 or not settings.api_durable_accept:
        return response
    # Half the Redis timeout: WAITAOF answers before the client gives up on the socket.
    timeout_ms = max(1, int(settings.api_redis_timeout * 500))
    if await asyncio.to_thread(persisted, request.app[REDIS], timeout_ms):
        return response
    metrics.REJECTED.labels("not_persisted").inc()
    raise ApiError(503, "queue_unavailable", "the job store could not write the job to disk "
                   "in time; retry shortly (with the same Idempotency-Key to get this job)",
                   headers={"Retry-After": "1"})
