"""Every API error leaves in one JSON shape, from one place: {"error": {"code", "message"}}."""

from __future__ import annotations

from typing import Any

import redis
from aiohttp import web
from pydantic import ValidationError

from shared import metrics
from shared.logging import get_logger

log = get_logger(__name__)

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 406: "not_acceptable", 409: "conflict",
               411: "length_required", 413: "payload_too_large", 415: "unsupported_media_type",
               422: "invalid_request", 429: "too_many_requests", 503: "unavailable"}


MAX_DETAILS = 20


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, *,
                 headers: dict[str, str] | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers, self.details = headers or {}, details


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   details: Any = None) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return web.json_response({"error": body}, status=status, headers=headers)


def validation_error(exc: ValidationError) -> ApiError:
    """A pydantic error as a 422 that names each offending field."""
    # A body with thousands of bad fields gets the first few, not an answer as big as it.
    details = [{"field": ".".join(str(p) for p in e["loc"]) or "(body)", "problem": e["msg"]}
               for e in exc.errors(include_url=False, include_input=False)[:MAX_DETAILS]]
    summary = "; ".join(f"{d['field']}: {d['problem']}" for d in details[:5])
    return ApiError(422, "invalid_request", summary, details=details)


def _unavailable(exc: Exception) -> web.Response:
    metrics.REJECTED.labels("unavailable").inc()
    log.warning("redis_unavailable", error=str(exc))
    return error_response(503, "queue_unavailable", "the job store is unreachable; retry "
                          "shortly", {"Retry-After": "5"})


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.headers, exc.details)
    except ValidationError as exc:
        err = validation_error(exc)
        return error_response(err.status, err.code, err.message, details=err.details)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in {"allow",
                                                                          "www-authenticate"}}
        return error_response(exc.status, _HTTP_CODES.get(exc.status, "http_error"),
                              exc.reason if exc.text is None or exc.text.startswith(
                                  f"{exc.status}:") else exc.text, headers)
    except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError,
            redis.ReadOnlyError) as exc:
        return _unavailable(exc)
    except Exception as exc:
        if isinstance(exc, redis.ResponseError) and str(exc).startswith("OOM"):
            return _unavailable(exc)  # Redis is full (maxmemory, noeviction): wait it out
        log.exception("unhandled_error", path=request.path)
        return error_response(500, "internal_error", "an unexpected error occurred")
