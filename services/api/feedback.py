"""POST /v1/queries/{id}/feedback: a person's rating of an answer, kept with the query.

A rating down also keeps the answer for review (shared/review.py); changing it to up
withdraws that reason. Only the key that asked can rate, as only it can read the query.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from services.api.body import json_body
from services.api.errors import ApiError
from services.api.schemas import FeedbackRequest
from services.api.state import OWNER, QUERIES, REVIEW
from shared import metrics
from shared.jobs import TERMINAL_QUERY
from shared.review import RATED_DOWN, save_feedback

routes = web.RouteTableDef()


def _not_found(query_id: str) -> ApiError:
    # As for every query endpoint: the same answer for a missing id and for someone else's.
    return ApiError(404, "query_not_found", f"no query {query_id!r}")


@routes.post("/v1/queries/{id}/feedback")
async def feedback(request: web.Request) -> web.Response:
    query_id = request.match_info["id"]
    body = await json_body(request, FeedbackRequest)
    queries = request.app[QUERIES]
    view = await asyncio.to_thread(queries.get, query_id, request[OWNER])
    if view is None:
        raise _not_found(query_id)
    if view["status"] not in TERMINAL_QUERY:
        raise ApiError(409, "query_not_finished",
                       f"query {query_id!r} is {view['status']}: rate it once it has ended")
    comment = " ".join(body.comment.split()) if body.comment else None
    given = {"rating": body.rating, "comment": comment or None, "at": time.time()}
    if not await asyncio.to_thread(save_feedback, queries, query_id, given):
        raise _not_found(query_id)  # expired in between
    metrics.FEEDBACK.labels(body.rating).inc()
    review = request.app[REVIEW]
    if body.rating == "down":
        await asyncio.to_thread(review.keep, queries, query_id, RATED_DOWN)
        metrics.REVIEW_KEPT.labels(RATED_DOWN).inc()
    else:
        await asyncio.to_thread(review.drop, queries, query_id, RATED_DOWN)
    return web.json_response({"id": query_id, "feedback": given})
