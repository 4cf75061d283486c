"""Idempotency-Key on the POSTs that create work: a retried request gets the first one's job.

The first request with a key claims it (SET NX, under the owner and the route) with a short
lease, creates its job, then stores its response for `api_idempotency_ttl`. A retry with the
same key and the same body gets that response again (with `Idempotent-Replayed: true`); the
same key with another body is refused; a retry that arrives while the first request is still
creating waits for it a little, then gets 409. A request that fails releases its claim, so a
retry can do the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis
from aiohttp import web
from pydantic import BaseModel

from services.api.errors import ApiError
from services.api.state import IDEMPOTENCY, OWNER
from shared.records import PREFIX

HEADER = "Idempotency-Key"
_VALID = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII, as the IETF draft's examples
_LEASE_S = 60  # how long a claim holds without a stored response (a crash mid-request)
_WAIT_FOR_FIRST_S = 5.0


class IdempotencyStore:
    def __init__(self, client: redis.Redis, ttl_seconds: int) -> None:
        self.r, self.ttl = client, ttl_seconds

    @staticmethod
    def key(owner: str, route: str, idempotency_key: str) -> str:
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
        return f"{PREFIX}:idem:{owner}:{route}:{digest}"

    def claim(self, key: str, fingerprint: str) -> dict[str, Any] | None:
        """None when this request now holds the key; else what the first request left."""
        while True:
            if self.r.set(key, json.dumps({"fp": fingerprint}), nx=True, ex=_LEASE_S):
                return None
            raw = self.r.get(key)
            if raw is not None:  # else it expired between the two calls: try again
                return dict(json.loads(raw))

    def save(self, key: str, fingerprint: str, response: web.Response) -> None:
        entry = {"fp": fingerprint, "status": response.status, "body": response.text,
                 "location": response.headers.get("Location")}
        self.r.set(key, json.dumps(entry), ex=self.ttl)

    def release(self, key: str) -> None:
        self.r.delete(key)


def fingerprint(body: BaseModel) -> str:
    """The validated request, not its bytes: a multipart retry has a new boundary."""
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _replay(entry: dict[str, Any]) -> web.Response:
    headers = {"Idempotent-Replayed": "true"}
    if entry.get("location"):
        headers["Location"] = entry["location"]
    return web.Response(status=entry["status"], text=entry["body"],
                        content_type="application/json", headers=headers)


async def once(request: web.Request, body: BaseModel,
               create: Callable[[], Awaitable[web.Response]]) -> web.Response:
    """`create()` once per Idempotency-Key (when the request has one)."""
    idempotency_key = request.headers.get(HEADER)
    if idempotency_key is None:
        return await create()
    if not _VALID.match(idempotency_key):
        raise ApiError(422, "invalid_request", f"{HEADER}: 1 to 255 visible ASCII characters")
    store = request.app[IDEMPOTENCY]
    key = store.key(request[OWNER], request.path, idempotency_key)
    fp = fingerprint(body)
    give_up = time.monotonic() + _WAIT_FOR_FIRST_S
    while (entry := await asyncio.to_thread(store.claim, key, fp)) is not None:
        if entry["fp"] != fp:
            raise ApiError(422, "idempotency_key_reused", f"this {HEADER} was used for a "
                           "different request; use a new key for a new request")
        if "body" in entry:
            return _replay(entry)
        if time.monotonic() > give_up:
            raise ApiError(409, "idempotency_in_progress", f"a request with this {HEADER} is "
                           "still being processed; retry shortly", headers={"Retry-After": "1"})
        await asyncio.sleep(0.1)
    try:
        response = await create()
    except BaseException:
        with contextlib.suppress(redis.RedisError):
            await asyncio.to_thread(store.release, key)
        raise
    await asyncio.to_thread(store.save, key, fp, response)
    return response
