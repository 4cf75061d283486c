"""/healthz (alive), /readyz (can serve), /metrics (Prometheus), and the same /metrics
without a key on `metrics_port` for Prometheus on a private network."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import redis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.api.state import REDIS, SETTINGS
from shared import health, metrics
from shared.jobs import Queues
from shared.queue import queue

routes = web.RouteTableDef()

# Which service must be listening for each queue to be served.
SERVICES = {"embedder": Queues.EMBED, "retriever": Queues.RETRIEVE, "generator": Queues.GENERATE}


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def readiness(client: redis.Redis) -> tuple[dict[str, str], list[str]]:
    """Each check's state and the problems: Redis answers, and each stage has at least one
    fresh, ready worker (the retriever's readiness includes reaching the vector store; the
    generator's, reaching its engine)."""
    try:
        client.ping()
        beats_of = {service: health.workers(client, service) for service in SERVICES}
    except redis.RedisError as exc:
        return {"redis": "unreachable"}, [f"redis: unreachable: {exc}"]
    checks, problems = {"redis": "ok"}, []
    for service, beats in beats_of.items():
        ready = [b for b in beats if b["ready"]]
        if ready:
            checks[service] = f"{len(ready)} ready worker(s)"
            continue
        detail = "; ".join(sorted({b["detail"] for b in beats})) or "no worker listening"
        checks[service] = f"not ready: {detail}"
        problems.append(f"{service}: {detail}")
    return checks, problems


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    checks, problems = await asyncio.to_thread(readiness, request.app[REDIS])
    body: dict[str, Any] = {"status": "not_ready" if problems else "ready", "checks": checks}
    if problems:
        body["error"] = {"code": "not_ready", "message": "; ".join(problems)}
    return web.json_response(body, status=503 if problems else 200)


def _queue_depths(client: redis.Redis) -> None:
    for q in Queues:
        metrics.QUEUE_DEPTH.labels(q.value).set(queue(client, q).count)


@routes.get("/metrics")
async def metrics_endpoint(request: web.Request) -> web.Response:
    with contextlib.suppress(redis.RedisError):  # still serve the API's own metrics
        await asyncio.to_thread(_queue_depths, request.app[REDIS])
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def metrics_port_ctx(app: web.Application) -> AsyncIterator[None]:
    """Serve /metrics alone, unauthenticated, on `metrics_port` (0: not at all)."""
    settings = app[SETTINGS]
    if not settings.metrics_port:
        yield
        return
    scrape = web.Application()
    scrape[REDIS] = app[REDIS]
    scrape.router.add_get("/metrics", metrics_endpoint)
    runner = web.AppRunner(scrape, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.api_host, settings.metrics_port).start()
        yield
    finally:
        await runner.cleanup()
