"""Query parameters: an API route takes those its OpenAPI operation declares and no others, as
its JSON bodies take no unknown field (a misspelt `?wiat=30` is an error, not a silent 0)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.api.errors import ApiError
from services.api.openapi import build_spec
from shared.settings import Settings

_CHECKED_PREFIX = "/v1/"


def declared_query_params(spec: dict[str, Any]) -> dict[tuple[str, str], frozenset[str]]:
    """(METHOD, path template) → the names of its query parameters."""
    return {(method.upper(), path): frozenset(p["name"] for p in op.get("parameters", [])
                                              if p["in"] == "query")
            for path, item in spec["paths"].items() for method, op in item.items()}


def query_params_middleware(settings: Settings) -> Any:
    declared = declared_query_params(build_spec(settings))

    @web.middleware
    async def check_query_params(request: web.Request, handler: Any) -> web.StreamResponse:
        resource = request.match_info.route.resource
        if request.query and resource is not None and \
                resource.canonical.startswith(_CHECKED_PREFIX):
            method = "GET" if request.method == "HEAD" else request.method
            allowed = declared.get((method, resource.canonical), frozenset())
            unknown = sorted(set(request.query) - allowed)
            if unknown:
                raise ApiError(422, "invalid_request", f"unknown query parameter(s): "
                               f"{', '.join(map(repr, unknown))}; this endpoint takes "
                               f"{', '.join(sorted(allowed)) or 'none'}")
        return await handler(request)

    return check_query_params
