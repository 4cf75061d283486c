"""Overload and abuse limits: a token bucket per API key on every authenticated request, and a
cap on the jobs waiting in the stage queues for the requests that add work.

Both refuse with 429 and Retry-After, under distinct codes: `rate_limited` (this key asks too
fast: slow down) and `overloaded` (the mesh is behind: everyone waits).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import redis
from aiohttp import web

from services.api.errors import ApiError
from services.api.state import LIMITS, OWNER
from shared import metrics
from shared.jobs import Queues
from shared.queue import queue
from shared.records import PREFIX, QueryRecords
from shared.settings import Settings

# The scrape must work while Redis is down, and Prometheus is not a client to slow down.
UNLIMITED_PATHS = frozenset({"/metrics"})
OVERLOAD_RETRY_AFTER_S = 5  # a few generations' time: long enough for the queues to move

# A token bucket, atomically, on Redis' clock (API replicas' clocks may differ). KEYS[1] the
# key's bucket; ARGV[1] tokens per second, ARGV[2] the bucket's size. Returns {1, 0} when a
# token was taken, else {0, milliseconds until one is there}.
_BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
local allowed, wait = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {allowed, wait}
"""


class Limits:
    """The rate limiter and the queue-depth check, over the API's Redis client."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.r = client
        self.rate, self.burst = settings.api_rate_limit, settings.api_rate_burst
        self.max_depth = settings.api_max_queue_depth
        self._bucket = client.register_script(_BUCKET)
        self._queue_keys = [queue(client, q).key for q in Queues]

    def take(self, owner: str) -> float:
        """Take a token from `owner`'s bucket: 0 when allowed, else seconds to wait."""
        if not self.rate:
            return 0.0
        allowed, wait_ms = self._bucket(keys=[f"{PREFIX}:rate:{owner}"],
                                        args=[self.rate, self.burst])
        return 0.0 if int(allowed) else max(int(wait_ms), 1) / 1000

    def depth(self) -> int:
        """Jobs waiting: in the stage queues, and for a generation slot (already taken off
        the generate queue by a worker lane, not yet on the engine)."""
        with self.r.pipeline(transaction=False) as pipe:
            for key in self._queue_keys:
                pipe.llen(key)
            pipe.zcard(QueryRecords.waiting_key)
            return sum(int(n) for n in pipe.execute())


@web.middleware
async def rate_limit_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """One Redis round trip per authenticated request; runs after auth (it needs the owner)."""
    if OWNER not in request or request.path in UNLIMITED_PATHS:
        return await handler(request)
    wait = await asyncio.to_thread(request.app[LIMITS].take, request[OWNER])
    if wait:
        metrics.REJECTED.labels("rate_limited").inc()
        raise ApiError(429, "rate_limited", "too many requests with this API key; retry after "
                       "the time in Retry-After", headers={"Retry-After": str(math.ceil(wait))})
    return await handler(request)


async def refuse_if_overloaded(request: web.Request) -> None:
    """429 `overloaded` when more jobs wait than `api_max_queue_depth`. Concurrent requests
    may each pass at the edge: the depth is a bound, not an exact count."""
    limits = request.app[LIMITS]
    if not limits.max_depth:
        return
    depth = await asyncio.to_thread(limits.depth)
    if depth >= limits.max_depth:
        metrics.REJECTED.labels("overloaded").inc()
        raise ApiError(429, "overloaded", f"the mesh is overloaded ({depth} jobs waiting); "
                       "retry after the time in Retry-After",
                       headers={"Retry-After": str(OVERLOAD_RETRY_AFTER_S)})
