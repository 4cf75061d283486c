"""Handlers for /v1/documents: ingest (JSON or file upload), list, show, delete."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import ValidationError

from services.api import durable, idempotency
from services.api.body import check_text, int_param, json_body
from services.api.errors import ApiError, validation_error
from services.api.extract import SUPPORTED, ExtractionError, extract_text, file_kind
from services.api.limits import refuse_if_overloaded
from services.api.state import DOCUMENTS, OWNER, REDIS, SETTINGS
from shared.jobs import (
    DOCUMENT_ID_PATTERN,
    DeleteDocumentJob,
    DocumentRequest,
    EmbedDocumentJob,
    Tasks,
)
from shared.queue import enqueue

routes = web.RouteTableDef()

_FORM_FIELDS = {"source", "document_id", "collection"}
_DOCUMENT_ID = re.compile(DOCUMENT_ID_PATTERN)


def _not_found(document_id: str) -> ApiError:
    return ApiError(404, "document_not_found", f"no document {document_id!r}")


def _document_id(request: web.Request) -> str:
    """The path's document id; one that no document can have is simply not found."""
    document_id = request.match_info["id"]
    if not _DOCUMENT_ID.match(document_id):
        raise _not_found(document_id)
    return document_id


_MAX_PARTS = 8  # a file and three fields, with room; thousands of parts are refused early
_FIELD_BYTES = 4096


async def _bounded_read(part: BodyPartReader, limit: int, what: str) -> bytes:
    """The part's bytes, refusing more than `limit` (chunked uploads carry no length)."""
    data = bytearray()
    while chunk := await part.read_chunk(256 * 1024):
        data += chunk
        if len(data) > limit:
            raise ApiError(413, "payload_too_large", f"{what} is larger than {limit} bytes")
    return bytes(part.decode(bytes(data)))


async def _read_upload(request: web.Request) -> DocumentRequest:
    """A multipart upload: one `file` part plus optional source/document_id/collection."""
    try:
        fields = await _read_parts(request)
    except (ValueError, RuntimeError, AssertionError, LookupError, HttpProcessingError) as exc:
        # aiohttp's multipart reader refuses malformed bodies (no boundary, a bad or forbidden
        # header, an unknown transfer encoding or charset) with these: the client's fault.
        raise ApiError(400, "malformed_multipart",
                       f"the multipart body could not be read: {exc}") from exc
    if "text" not in fields:
        raise ApiError(422, "invalid_request", "the upload has no 'file' part")
    try:
        return DocumentRequest.model_validate(fields)
    except ValidationError as exc:
        raise validation_error(exc) from exc


async def _read_parts(request: web.Request) -> dict[str, Any]:
    reader = await request.multipart()
    fields: dict[str, Any] = {}
    parts = 0
    while (part := await reader.next()) is not None:
        parts += 1
        if parts > _MAX_PARTS:
            raise ApiError(422, "invalid_request", f"more than {_MAX_PARTS} parts")
        if not isinstance(part, BodyPartReader):
            raise ApiError(422, "invalid_request", "nested multipart bodies are not supported")
        if part.name == "file":
            if "text" in fields:
                raise ApiError(422, "invalid_request", "more than one 'file' part")
            fields["text"] = await _read_file(request, part)
            fields.setdefault("source", part.filename)
        elif part.name in _FORM_FIELDS:
            data = await _bounded_read(part, _FIELD_BYTES, f"the field {part.name!r}")
            fields[part.name] = data.decode(part.get_charset("utf-8")).strip()
        else:
            raise ApiError(422, "invalid_request", f"unknown form field {part.name!r}")
    return fields


async def _read_file(request: web.Request, part: BodyPartReader) -> str:
    filename = part.filename or ""
    if file_kind(filename) is None:
        raise ApiError(415, "unsupported_file_type", f"cannot ingest {filename!r}: "
                       f"supported types are {', '.join(sorted(SUPPORTED))}")
    data = await _bounded_read(part, request.app[SETTINGS].api_max_body_bytes, "the file")
    try:
        return await asyncio.to_thread(extract_text, filename, data)
    except ExtractionError as exc:
        raise ApiError(422, "unreadable_file", f"{filename}: {exc}") from exc


@routes.post("/v1/documents")
async def ingest(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    if request.content_type.startswith("multipart/"):
        body = await _read_upload(request)
    else:
        body = await json_body(request, DocumentRequest)
    text = check_text("text", body.text, settings.ingest_max_document_chars)
    response = await idempotency.once(request, body, lambda: _create(request, body, text))
    return await durable.confirm(request, response)


async def _create(request: web.Request, body: DocumentRequest, text: str) -> web.Response:
    await refuse_if_overloaded(request)
    settings = request.app[SETTINGS]
    document_id = body.document_id or uuid.uuid4().hex
    collection = body.collection or settings.vectorstore_collection
    owner = request[OWNER]
    docs = request.app[DOCUMENTS]
    doc_key, generation, stale = await asyncio.to_thread(
        docs.upsert, owner, document_id, body.source, collection, len(text), body.metadata or {})
    job = EmbedDocumentJob(doc_key=doc_key, generation=generation, document_id=document_id,
                           owner=owner, source=body.source, collection=collection, text=text,
                           metadata=body.metadata or {}, stale_collections=stale)
    await asyncio.to_thread(enqueue, request.app[REDIS], Tasks.EMBED_DOCUMENT, job,
                            job_timeout=settings.stage_timeout)
    return web.json_response(
        {"id": document_id, "status": "queued", "source": body.source, "collection": collection},
        status=202, headers={"Location": f"/v1/documents/{document_id}"})


@routes.get("/v1/documents")
async def list_documents(request: web.Request) -> web.Response:
    offset = int_param(request, "offset", 0, 0, 10_000_000)
    limit = int_param(request, "limit", 100, 1, 1000)
    total, docs = await asyncio.to_thread(request.app[DOCUMENTS].list, request[OWNER], offset,
                                          limit)
    return web.json_response({"documents": docs, "total": total, "offset": offset,
                              "limit": limit})


@routes.get("/v1/documents/{id}")
async def show(request: web.Request) -> web.Response:
    document_id = _document_id(request)
    doc = await asyncio.to_thread(request.app[DOCUMENTS].get, request[OWNER], document_id)
    if doc is None:
        raise _not_found(document_id)
    return web.json_response(doc)


@routes.delete("/v1/documents/{id}")
async def delete(request: web.Request) -> web.Response:
    document_id = _document_id(request)
    docs = request.app[DOCUMENTS]
    doc = await asyncio.to_thread(docs.remove, request[OWNER], document_id)
    if doc is None:
        raise _not_found(document_id)
    job = DeleteDocumentJob(doc_key=docs.doc_key(request[OWNER], document_id),
                            collections=[doc["collection"]])
    await asyncio.to_thread(enqueue, request.app[REDIS], Tasks.DELETE_DOCUMENT, job,
                            job_timeout=request.app[SETTINGS].stage_timeout)
    return web.json_response({"id": document_id, "status": "deleted"})
