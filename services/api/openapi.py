"""GET /openapi.json: OpenAPI 3.1 for every endpoint, built from the request/response models."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from services.api import schemas
from shared.jobs import DocumentRequest, QueryRequest

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


def _errors(*statuses: int) -> dict[str, Any]:
    text = {400: "Malformed request", 401: "Missing or invalid API key", 404: "Not found",
            409: "Conflict", 413: "Body too large", 415: "Unsupported media or file type",
            422: "Invalid request", 503: "Unavailable"}
    return {str(s): {"description": text[s], **_json(schemas.ErrorBody)} for s in statuses}


def _id(name: str) -> dict[str, Any]:
    return {"name": "id", "in": "path", "required": True, "description": name,
            "schema": {"type": "string", "minLength": 1, "maxLength": 128}}


def _int_query(name: str, low: int, high: int, text: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": text,
            "schema": {"type": "integer", "minimum": low, "maximum": high}}


def build_spec() -> dict[str, Any]:
    upload = {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary",
                 "description": ".txt, .md, .html or .pdf"},
        "source": {"type": "string"}, "document_id": {"type": "string"},
        "collection": {"type": "string"}}}
    common = _errors(401, 503)
    paths = {
        "/v1/queries": {"post": {
            "summary": "Ask a question; returns a job id at once", "operationId": "submitQuery",
            "requestBody": {"required": True, **_json(QueryRequest)},
            "responses": {"202": {"description": "Accepted", **_json(schemas.QueryAccepted)},
                          **_errors(400, 413, 415, 422), **common}}},
        "/v1/queries/{id}": {
            "get": {"summary": "Poll a query", "operationId": "getQuery",
                    "parameters": [_id("Query id"), _int_query(
                        "wait", 0, 30, "Hold the request up to N seconds until the query ends")],
                    "responses": {"200": {"description": "The query", **_json(schemas.QueryView)},
                                  **_errors(404, 422), **common}},
            "delete": {"summary": "Cancel an unfinished query", "operationId": "cancelQuery",
                       "parameters": [_id("Query id")],
                       "responses": {"200": {"description": "Cancelled",
                                             **_json(schemas.QueryView)},
                                     **_errors(404, 409), **common}}},
        "/v1/queries/{id}/feedback": {"post": {
            "summary": "Rate a finished answer up or down, with an optional comment",
            "operationId": "giveFeedback", "parameters": [_id("Query id")],
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
                     "operationId": "ingestDocument",
                     "requestBody": {"required": True, "content": {
                         "application/json": {"schema": {"$ref": _REF.format(
                             model="DocumentRequest")}},
                         "multipart/form-data": {"schema": upload}}},
                     "responses": {"202": {"description": "Accepted",
                                           **_json(schemas.DocumentAccepted)},
                                   **_errors(400, 413, 415, 422), **common}},
            "get": {"summary": "List your documents", "operationId": "listDocuments",
                    "parameters": [_int_query("offset", 0, 10_000_000, "Skip this many"),
                                   _int_query("limit", 1, 1000, "Page size")],
                    "responses": {"200": {"description": "Documents",
                                          **_json(schemas.DocumentList)},
                                  **_errors(422), **common}}},
        "/v1/documents/{id}": {
            "get": {"summary": "A document's ingestion status", "operationId": "getDocument",
                    "parameters": [_id("Document id")],
                    "responses": {"200": {"description": "The document",
                                          **_json(schemas.DocumentView)},
                                  **_errors(404), **common}},
            "delete": {"summary": "Delete a document and its chunks",
                       "operationId": "deleteDocument", "parameters": [_id("Document id")],
                       "responses": {"200": {"description": "Deleted",
                                             **_json(schemas.DocumentDeleted)},
                                     **_errors(404), **common}}},
        "/healthz": {"get": {"summary": "Liveness", "operationId": "healthz", "security": [],
                             "responses": {"200": {"description": "Alive"}}}},
        "/readyz": {"get": {"summary": "Readiness: Redis, Milvus and a worker per stage",
                            "operationId": "readyz", "security": [],
                            "responses": {"200": {"description": "Ready"},
                                          "503": {"description": "Not ready"}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "operationId": "metrics",
                             "responses": {"200": {"description": "Metrics",
                                                   "content": {"text/plain": {}}},
                                           **_errors(401)}}},
        "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi",
                                  "responses": {"200": {"description": "OpenAPI 3.1"},
                                                **_errors(401)}}},
    }
    models = [QueryRequest, DocumentRequest, schemas.ErrorBody, schemas.QueryAccepted,
              schemas.QueryView, schemas.DocumentAccepted, schemas.DocumentView,
              schemas.DocumentList, schemas.DocumentDeleted, schemas.FeedbackRequest,
              schemas.FeedbackGiven, schemas.ReviewList]
    return {
        "openapi": "3.1.0",
        "info": {"title": "ragmesh", "version": "0.1.0",
                 "description": "Ask questions of your documents, with cited sources. Work is "
                                "asynchronous: submit, get a job id, poll."},
        "paths": paths,
        "components": {"schemas": _components(models), "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer",
                           "description": "One of RAGMESH_API_KEYS"}}},
        "security": [{"bearerAuth": []}],
    }


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(build_spec())
