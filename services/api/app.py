"""create_app(settings): the real application, for `__main__` and for tests alike."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from services.api import documents, feedback, health, openapi, queries, review
from services.api.auth import auth_middleware
from services.api.errors import error_middleware
from services.api.observe import observe_middleware
from services.api.state import DOCUMENTS, QUERIES, REDIS, REVIEW, SETTINGS
from shared.queue import connect
from shared.records import DocumentRecords, QueryRecords
from shared.review import ReviewQueue
from shared.settings import Settings


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    client = connect(settings)
    app[REDIS] = client
    app[QUERIES] = QueryRecords(client, settings.query_result_ttl)
    app[DOCUMENTS] = DocumentRecords(client, settings.query_result_ttl)
    app[REVIEW] = ReviewQueue(client, settings.review_ttl, settings.review_max_items)
    yield
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
        middlewares=[observe_middleware, error_middleware, auth_middleware],
        client_max_size=settings.api_max_body_bytes,
    )
    app[SETTINGS] = settings
    app.cleanup_ctx.extend([_executor_ctx, _redis_ctx])
    for table in (health.routes, openapi.routes, queries.routes, feedback.routes,
                  documents.routes, review.routes):
        app.add_routes(table)
    return app
