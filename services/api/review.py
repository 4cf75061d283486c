"""GET /v1/review: the answers kept for review (low trust or rated down), newest first.

What `ragmesh eval export-review` turns into a dataset draft. Each key sees its own.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from services.api.body import int_param
from services.api.state import OWNER, REVIEW

routes = web.RouteTableDef()


@routes.get("/v1/review")
async def review_items(request: web.Request) -> web.Response:
    limit = int_param(request, "limit", 1000, 1, 10_000)
    total, items = await asyncio.to_thread(request.app[REVIEW].items, request[OWNER], limit)
    return web.json_response({"items": items, "total": total, "limit": limit})
