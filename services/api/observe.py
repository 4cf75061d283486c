"""Per-request metrics and one access log line per request."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from shared import metrics
from shared.logging import get_logger

log = get_logger("api.access")


def _route(request: web.Request) -> str:
    # The route template, not the raw path: bounded label values.
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


@web.middleware
async def observe_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        took = time.perf_counter() - started
        route = _route(request)
        metrics.HTTP_REQUESTS.labels(request.method, route, str(status)).inc()
        metrics.HTTP_DURATION.labels(request.method, route).observe(took)
        if route not in {"/healthz", "/metrics"}:
            log.info("http_request", method=request.method, route=route, status=status,
                     ms=round(took * 1000, 2))
