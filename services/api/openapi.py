"""GET /openapi.json: OpenAPI 3.1 for every endpoint, built from the request/response models."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from services.api import schemas
from services.api.state import SETTINGS
from shared.jobs import DOCUMENT_ID_PATTERN, QUERY_ID_PATTERN, DocumentRequest, QueryRequest
from shared.settings import Settings

routes = web.RouteTableDef()

_REF = "#/components/schemas/{model}"


def _components(models: list[type[BaseModel]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=_REF)
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": _REF.format(
        model=model.__name__)}}}}


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again",
                                "schema": {"type": "string", "pattern": r"^\d+$"}}}
_ERROR_TEXT = {
    400: "Malformed request", 401: "Missing or invalid API key",
    404: "Not found", 409: "Conflict", 413: "Body too large",
    415: "Unsupported media or file type", 422: "Invalid request",
    429: "`rate_limited`: this key sends too fast; `overloaded`: too many jobs wait. "
         "Retry after Retry-After seconds",
    503: "`queue_unavailable`: Redis is unreachable (or, for a POST, could not write the new "
         "job to disk in time). Retry after Retry-After seconds"}


# A request the HTTP server cannot parse (a request line or header over 8 KiB, a bad byte)
# is refused before any handler runs, by aiohttp itself, in plain text.
_UNPARSEABLE = {"400": {
    "description": "Malformed request; the HTTP server's own refusal of a request it cannot "
                   "parse (a request line or header over 8 KiB) comes as text/plain",
    "content": {"application/json": {"schema": {"$ref": _REF.format(model="ErrorBody")}},
                "text/plain": {"schema": {"type": "string"}}}}}


def _errors(*statuses: int) -> dict[str, Any]:
    out = {}
    for s in statuses:
        out[str(s)] = {"description": _ERROR_TEXT[s], **_json(schemas.ErrorBody)}
        if s in (429, 503):
            out[str(s)]["headers"] = _RETRY_AFTER
    if 400 in statuses:
        out.update(_UNPARSEABLE)
    return out


def _id(name: str, pattern: str) -> dict[str, Any]:
    return {"name": "id", "in": "path", "required": True, "description": name,
            "schema": {"type": "string", "pattern": pattern}}


def _int_query(name: str, low: int, high: int, text: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": text,
            "schema": {"type": "integer", "minimum": low, "maximum": high}}


_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "Send the same key when you retry: you get the first request's job back "
                   "(with `Idempotent-Replayed: true`) instead of a second job. Kept per API "
                   "key for RAGMESH_API_IDEMPOTENCY_TTL; the same key with a different body "
                   "is refused (422 `idempotency_key_reused`); while the first request is "
                   "still being processed, 409 `idempotency_in_progress`.",
    "schema": {"type": "string", "pattern": r"^[\x21-\x7e]{1,255}$"}}


def _accepted(model: type[BaseModel]) -> dict[str, Any]:
    return {"description": "Accepted (or, with a repeated Idempotency-Key, the first answer)",
            **_json(model), "headers": {
                "Location": {"description": "Where to poll", "schema": {"type": "string"}},
                "Idempotent-Replayed": {"description": "`true` on a replayed answer",
                                        "schema": {"type": "string", "enum": ["true"]}}}}


def _request_schemas(settings: Settings) -> dict[str, Any]:
    """The request bodies as this server checks them: the limits that come from settings,
    and text that is not blank and holds no NUL."""
    text = r"^[^\x00]*[^\x00\s][^\x00]*$"
    query = QueryRequest.model_json_schema(ref_template=_REF)
    query["properties"]["question"].update(maxLength=settings.query_max_question_chars,
                                           pattern=text)
    query["properties"]["top_k"]["anyOf"][0]["maximum"] = settings.retrieval_max_top_k
    document = DocumentRequest.model_json_schema(ref_template=_REF)
    document["properties"]["text"].update(maxLength=settings.ingest_max_document_chars,
                                          pattern=text)
    return {"QueryRequest": query, "DocumentRequest": document}


def build_spec(settings: Settings) -> dict[str, Any]:
    upload = {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary",
                 "description": ".txt, .md, .html or .pdf"},
        "source": {"type": "string"}, "document_id": {"type": "string"},
        "collection": {"type": "string"}}}
    common = _errors(400, 401, 429, 503)
    query_id = _id("Query id", QUERY_ID_PATTERN)
    document_id = _id("Document id", DOCUMENT_ID_PATTERN)
    paths = {
        "/v1/queries": {"post": {
            "summary": "Ask a question; returns a job id at once", "operationId": "submitQuery",
            "parameters": [_IDEMPOTENCY_KEY],
            "requestBody": {"required": True, **_json(QueryRequest)},
            "responses": {"202": _accepted(schemas.QueryAccepted),
                          **_errors(409, 413, 415, 422), **common}}},
        "/v1/queries/{id}": {
            "get": {"summary": "Poll a query", "operationId": "getQuery",
                    "parameters": [query_id, _int_query(
                        "wait", 0, 30, "Hold the request up to N seconds until the query ends")],
                    "responses": {"200": {"description": "The query", **_json(schemas.QueryView)},
                                  **_errors(404, 422), **common}},
            "delete": {"summary": "Cancel an unfinished query", "operationId": "cancelQuery",
                       "parameters": [query_id],
                       "responses": {"200": {"description": "Cancelled",
                                             **_json(schemas.QueryView)},
                                     **_errors(404, 409), **common}}},
        "/v1/queries/{id}/events": {"get": {
            "summary": "Server-Sent Events: status changes, answer tokens, then the result",
            "operationId": "queryEvents",
            "parameters": [query_id, {
                "name": "Last-Event-ID", "in": "header", "required": False,
                "description": "Resume after this event (as EventSource does on reconnect)",
                "schema": {"type": "string", "pattern": r"^\d{1,20}-\d{1,20}$"}}, {
                "name": "last_event_id", "in": "query", "required": False,
                "description": "The same, for clients that cannot set the header",
                "schema": {"type": "string", "pattern": r"^\d{1,20}-\d{1,20}$"}}],
            "responses": {"200": {"description": "An event stream: `status` ({status}), "
                                                 "`delta` ({text}), and `final` (the query); "
                                                 "`error` ({error}) when the stream must end "
                                                 "early: reconnect with Last-Event-ID",
                                  "content": {"text/event-stream": {"schema": {
                                      "type": "string"}}}},
                          **_errors(404, 422), **common}}},
        "/v1/queries/{id}/feedback": {"post": {
            "summary": "Rate a finished answer up or down, with an optional comment",
            "operationId": "giveFeedback", "parameters": [query_id],
            "requestBody": {"required": True, **_json(schemas.FeedbackRequest)},
            "responses": {"200": {"description": "Stored with the query",
                                  **_json(schemas.FeedbackGiven)},
                          **_errors(400, 404, 409, 415, 422), **common}}},
        "/v1/review": {"get": {
            "summary": "Answers kept for review (low trust or rated down), newest first",
            "operationId": "listReview",
            "parameters": [_int_query("limit", 1, 10_000, "At most this many")],
            "responses": {"200": {"description": "Kept answers", **_json(schemas.ReviewList)},
                          **_errors(422), **common}}},
        "/v1/documents": {
            "post": {"summary": "Ingest a document (JSON text or a file upload)",
                     "operationId": "ingestDocument", "parameters": [_IDEMPOTENCY_KEY],
                     "requestBody": {"required": True, "content": {
                         "application/json": {"schema": {"$ref": _REF.format(
                             model="DocumentRequest")}},
                         "multipart/form-data": {"schema": upload}}},
                     "responses": {"202": _accepted(schemas.DocumentAccepted),
                                   **_errors(409, 413, 415, 422), **common}},
            "get": {"summary": "List your documents", "operationId": "listDocuments",
                    "parameters": [_int_query("offset", 0, 10_000_000, "Skip this many"),
                                   _int_query("limit", 1, 1000, "Page size")],
                    "responses": {"200": {"description": "Documents",
                                          **_json(schemas.DocumentList)},
                                  **_errors(422), **common}}},
        "/v1/documents/{id}": {
            "get": {"summary": "A document's ingestion status", "operationId": "getDocument",
                    "parameters": [document_id],
                    "responses": {"200": {"description": "The document",
                                          **_json(schemas.DocumentView)},
                                  **_errors(404), **common}},
            "delete": {"summary": "Delete a document and its chunks",
                       "operationId": "deleteDocument", "parameters": [document_id],
                       "responses": {"200": {"description": "Deleted",
                                             **_json(schemas.DocumentDeleted)},
                                     **_errors(404), **common}}},
        "/healthz": {"get": {"summary": "Liveness", "operationId": "healthz", "security": [],
                             "responses": {"200": {"description": "Alive",
                                                   **_json(schemas.Alive)}, **_UNPARSEABLE}}},
        "/readyz": {"get": {"summary": "Readiness: Redis, Milvus and a worker per stage",
                            "operationId": "readyz", "security": [],
                            "responses": {"200": {"description": "Ready",
                                                  **_json(schemas.Readiness)},
                                          "503": {"description": "Not ready",
                                                  **_json(schemas.Readiness)},
                                          **_UNPARSEABLE}}},
        "/metrics": {"get": {"summary": "Prometheus metrics (not rate-limited: it must answer "
                                        "while Redis is down)", "operationId": "metrics",
                             "responses": {"200": {"description": "Metrics",
                                                   "content": {"text/plain": {}}},
                                           **_errors(400, 401)}}},
        "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi",
                                  "responses": {"200": {"description": "OpenAPI 3.1",
                                                        "content": {"application/json": {}}},
                                                **common}}},
    }
    models = [schemas.ErrorBody, schemas.QueryAccepted, schemas.QueryView,
              schemas.DocumentAccepted, schemas.DocumentView, schemas.DocumentList,
              schemas.DocumentDeleted, schemas.Alive, schemas.Readiness,
              schemas.FeedbackRequest, schemas.FeedbackGiven, schemas.ReviewList]
    return {
        "openapi": "3.1.0",
        "info": {"title": "ragmesh", "version": "0.1.0",
                 "description": "Ask questions of your documents, with cited sources. Work is "
                                "asynchronous: submit, get a job id, poll."},
        "paths": paths,
        "components": {"schemas": {**_components(models), **_request_schemas(settings)},
                       "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer",
                           "description": "One of RAGMESH_API_KEYS"}}},
        "security": [{"bearerAuth": []}],
    }


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(build_spec(request.app[SETTINGS]))
