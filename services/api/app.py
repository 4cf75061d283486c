"""create_app(settings): the real application, for `__main__` and for tests alike."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import redis.asyncio
from aiohttp import web
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff

from services.api import documents, events, feedback, health, openapi, queries, review
from services.api.auth import auth_middleware
from services.api.errors import error_middleware
from services.api.idempotency import IdempotencyStore
from services.api.limits import Limits, rate_limit_middleware
from services.api.observe import observe_middleware
from services.api.params import query_params_middleware
from services.api.state import (
    AREDIS,
    DOCUMENTS,
    IDEMPOTENCY,
    LIMITS,
    QUERIES,
    REDIS,
    REVIEW,
    SETTINGS,
)
from shared.queue import connect
from shared.records import DocumentRecords, QueryRecords
from shared.review import ReviewQueue
from shared.settings import Settings


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # Bounded timeouts and one retry: while Redis is unreachable a request answers 503 within
    # a few seconds instead of hanging through redis-py's default retries.
    timeout = settings.api_redis_timeout
    client = connect(settings, timeout=timeout)
    app[REDIS] = client
    app[QUERIES] = QueryRecords(client, settings.query_result_ttl, settings.query_failed_ttl,
                                settings.query_tombstone_ttl)
    app[DOCUMENTS] = DocumentRecords(client, settings.query_result_ttl)
    app[LIMITS] = Limits(client, settings)
    app[IDEMPOTENCY] = IdempotencyStore(client, settings.api_idempotency_ttl)
    app[AREDIS] = redis.asyncio.Redis.from_url(
        settings.redis_url.get_secret_value(), socket_connect_timeout=timeout,
        socket_timeout=events.BLOCK_MS / 1000 + timeout, health_check_interval=15,
        retry=AsyncRetry(ExponentialBackoff(cap=0.2, base=0.05), 1))
    app[REVIEW] = ReviewQueue(client, settings.review_ttl, settings.review_max_items)
    yield
    await app[AREDIS].aclose()
    client.close()


async def _executor_ctx(app: web.Application) -> AsyncIterator[None]:
    # Redis and RQ calls are blocking and run in threads; size the pool for many waiters.
    executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="api-io")
    asyncio.get_running_loop().set_default_executor(executor)
    yield
    executor.shutdown(wait=False, cancel_futures=True)


def create_app(settings: Settings) -> web.Application:
    if not settings.api_keys:
        raise ValueError("no API keys configured: set RAGMESH_API_KEYS")
    app = web.Application(
        middlewares=[observe_middleware, error_middleware, auth_middleware,
                     rate_limit_middleware, query_params_middleware(settings)],
        client_max_size=settings.api_max_body_bytes,
    )
    app[SETTINGS] = settings
    app.cleanup_ctx.extend([_executor_ctx, _redis_ctx, health.metrics_port_ctx])
    for table in (health.routes, openapi.routes, queries.routes, events.routes, feedback.routes,
                  documents.routes, review.routes):
        app.add_routes(table)
    return app
