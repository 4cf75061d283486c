"""Typed app state: what handlers share, under web.AppKey (no module-level singletons)."""

from __future__ import annotations

import redis
import redis.asyncio
from aiohttp import web

from shared.records import DocumentRecords, QueryRecords
from shared.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", redis.Redis)
AREDIS = web.AppKey("aredis", redis.asyncio.Redis)  # for blocking reads of event streams
QUERIES = web.AppKey("queries", QueryRecords)
DOCUMENTS = web.AppKey("documents", DocumentRecords)
OWNER = web.RequestKey("owner", str)  # the owner id of the authenticated API key
