"""Typed app state: what handlers share, under web.AppKey (no module-level singletons)."""

from __future__ import annotations

import redis
from aiohttp import web

from shared.records import DocumentRecords, QueryRecords
from shared.review import ReviewQueue
from shared.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", redis.Redis)
QUERIES = web.AppKey("queries", QueryRecords)
DOCUMENTS = web.AppKey("documents", DocumentRecords)
REVIEW = web.AppKey("review", ReviewQueue)
OWNER = web.RequestKey("owner", str)  # the owner id of the authenticated API key
