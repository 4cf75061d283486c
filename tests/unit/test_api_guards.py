"""Pure pieces of the API's guards: idempotency fingerprints and keys, declared query
parameters, JSON integers, the metadata schema, the OpenAPI error answers, and how the CLI's
client reads Retry-After."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from ragmesh.client import _retry_after
from services.api.idempotency import _VALID, IdempotencyStore, fingerprint
from services.api.openapi import build_spec
from services.api.params import declared_query_params
from shared.jobs import DocumentRequest, QueryRequest
from shared.settings import Settings

pytestmark = pytest.mark.unit

SPEC = build_spec(Settings(api_keys="k", query_max_question_chars=123, retrieval_max_top_k=7))


def test_fingerprint_is_the_validated_request_not_its_bytes() -> None:
    one = QueryRequest.model_validate({"question": "q", "top_k": 3})
    same = QueryRequest.model_validate({"top_k": 3.0, "question": "q"})
    other = QueryRequest.model_validate({"question": "q", "top_k": 4})
    assert fingerprint(one) == fingerprint(same) != fingerprint(other)


def test_idempotency_keys_are_scoped_by_owner_and_route_and_never_stored_raw() -> None:
    key = IdempotencyStore.key("owner1", "/v1/queries", "my secret key")
    assert key.startswith("ragmesh:idem:owner1:/v1/queries:") and "secret" not in key
    assert key != IdempotencyStore.key("owner2", "/v1/queries", "my secret key")
    assert key != IdempotencyStore.key("owner1", "/v1/documents", "my secret key")


@pytest.mark.parametrize(("value", "valid"), [
    ("a", True), ("550e8400-e29b-41d4-a716-446655440000", True), ("x" * 255, True),
    ("", False), ("x" * 256, False), ("has space", False), ("tab\t", False), ("é", False),
])
def test_idempotency_key_syntax(value: str, valid: bool) -> None:
    assert bool(_VALID.match(value)) is valid


def test_query_parameters_are_those_the_document_declares() -> None:
    declared = declared_query_params(SPEC)
    assert declared[("GET", "/v1/queries/{id}")] == {"wait"}
    assert declared[("GET", "/v1/queries/{id}/events")] == {"last_event_id"}
    assert declared[("GET", "/v1/documents")] == {"offset", "limit"}
    assert declared[("POST", "/v1/queries")] == frozenset()


@pytest.mark.parametrize(("top_k", "accepted"), [(5, True), (5.0, True), (5.5, False),
                                                 ("5", False), (True, False), (0, False)])
def test_top_k_is_a_json_integer(top_k: object, accepted: bool) -> None:
    if accepted:
        assert QueryRequest.model_validate({"question": "q", "top_k": top_k}).top_k == 5
    else:
        with pytest.raises(ValidationError):
            QueryRequest.model_validate({"question": "q", "top_k": top_k})


def test_the_document_carries_the_servers_limits() -> None:
    query = SPEC["components"]["schemas"]["QueryRequest"]["properties"]
    assert query["question"]["maxLength"] == 123
    assert query["top_k"]["anyOf"][0] == {"type": "integer", "minimum": 1, "maximum": 7}
    metadata = SPEC["components"]["schemas"]["DocumentRequest"]["properties"]["metadata"]
    assert "patternProperties" not in metadata["anyOf"][0]
    assert metadata["anyOf"][0]["propertyNames"]["pattern"] == r"^[^\x00]*$"


def test_metadata_refuses_nul_and_long_values() -> None:
    for metadata in ({"k\x00": 1}, {"k": "v\x00"}, {"k": "v" * 1025}, {"": 1}, {"k" * 65: 1}):
        with pytest.raises(ValidationError):
            DocumentRequest(text="t", source="s", metadata=metadata)


def test_every_authenticated_operation_documents_429_and_503_with_retry_after() -> None:
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            if operation.get("security") == [] or path == "/metrics":
                continue
            for status in ("401", "429", "503"):
                assert status in operation["responses"], (method, path, status)
            assert "Retry-After" in operation["responses"]["429"]["headers"]


@pytest.mark.parametrize(("status", "header", "wait"), [
    (429, "3", 3.0), (503, "5", 5.0), (429, "1000", 30.0), (429, "0", 0.5), (503, "soon", 1.0),
    (429, None, 1.0), (200, "3", None), (500, "3", None), (404, None, None)])
def test_the_client_reads_retry_after(status: int, header: str | None,
                                      wait: float | None) -> None:
    headers = {"Retry-After": header} if header is not None else {}
    assert _retry_after(httpx.Response(status, headers=headers)) == wait
