"""Bearer API keys on every endpoint but health; owners are hashes of keys."""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from services.api.errors import ApiError
from services.api.state import OWNER, SETTINGS
from shared.records import owner_of

PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})


def _match(presented: str, keys: list[str]) -> bool:
    # Compare against every key, in constant time, so timing reveals neither key nor position.
    # Header bytes that are not UTF-8 arrive as surrogate escapes: compare them as bytes.
    given = presented.encode("utf-8", "surrogateescape")
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key.encode())
    return found


@web.middleware
async def auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS:
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="ragmesh"'}
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "missing API key: send 'Authorization: Bearer <key>'",
                       headers=challenge)
    keys = [k.get_secret_value() for k in request.app[SETTINGS].api_keys]
    if not _match(token.strip(), keys):
        raise ApiError(401, "unauthorized", "invalid API key", headers=challenge)
    request[OWNER] = owner_of(token.strip())
    return await handler(request)
