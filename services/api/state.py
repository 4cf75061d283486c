"""Typed app state: what handlers share, under web.AppKey (no module-level singletons)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis
import redis.asyncio
from aiohttp import web

from shared.records import DocumentRecords, QueryRecords
from shared.review import ReviewQueue
from shared.settings import Settings

if TYPE_CHECKING:
    from services.api.idempotency import IdempotencyStore
    from services.api.limits import Limits

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", redis.Redis)
AREDIS = web.AppKey("aredis", redis.asyncio.Redis)  # for blocking reads of event streams
QUERIES = web.AppKey("queries", QueryRecords)
DOCUMENTS = web.AppKey("documents", DocumentRecords)
LIMITS: web.AppKey[Limits] = web.AppKey("limits")
IDEMPOTENCY: web.AppKey[IdempotencyStore] = web.AppKey("idempotency")
REVIEW = web.AppKey("review", ReviewQueue)
OWNER = web.RequestKey("owner", str)  # the owner id of the authenticated API key
