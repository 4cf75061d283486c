"""Reading request bodies into validated models, with clear 4xx errors."""

from __future__ import annotations

import json
import re
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from services.api.errors import ApiError, validation_error
from services.api.state import SETTINGS

M = TypeVar("M", bound=BaseModel)
_INTEGER = re.compile(r"-?[0-9]{1,18}")


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The body, refusing more than `limit` bytes before reading them where the length is
    declared, and as they arrive where it is not (chunked, or compressed on the wire)."""
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    data = bytearray()
    async for chunk in request.content.iter_chunked(256 * 1024):
        data += chunk
        if len(data) > limit:
            raise too_large(limit)
    return bytes(data)


def too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the body is larger than {limit} bytes")


async def json_body(request: web.Request, model: type[M], max_bytes: int | None = None) -> M:
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    raw = await read_limited(request, max_bytes or request.app[SETTINGS].api_max_body_bytes)
    try:
        data = json.loads(raw, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise ApiError(400, "malformed_json", "the body is nested too deeply") from exc
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_request", "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from exc


def check_text(field: str, value: str, max_chars: int) -> str:
    """Refuse blank, NUL-carrying or over-long text."""
    if "\x00" in value:
        raise ApiError(422, "invalid_request", f"{field}: must not contain NUL characters")
    if not value.strip():
        raise ApiError(422, "invalid_request", f"{field}: must not be blank")
    if len(value) > max_chars:
        raise ApiError(422, "invalid_request",
                       f"{field}: longer than {max_chars} characters ({len(value)})")
    return value


def int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    # int() would also take "٣", "1_0" and " 7 ": the document says an integer, in digits.
    if not _INTEGER.fullmatch(raw):
        raise ApiError(422, "invalid_request", f"{name}: must be an integer")
    value = int(raw)
    if not low <= value <= high:
        raise ApiError(422, "invalid_request", f"{name}: must be between {low} and {high}")
    return value
