"""shared/jobs.py: validation of the client-facing request models."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.jobs import DocumentRequest, QueryRequest

pytestmark = pytest.mark.unit


def test_query_request_minimal() -> None:
    q = QueryRequest(question="How many leave days?")
    assert (q.top_k, q.collection, q.max_tokens, q.temperature) == (None, None, None, None)


def test_query_request_rejects_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="topk"):
        QueryRequest.model_validate({"question": "q", "topk": 3})


def test_query_request_rejects_empty_question() -> None:
    with pytest.raises(ValidationError, match="question"):
        QueryRequest(question="")


def test_query_request_rejects_missing_question() -> None:
    with pytest.raises(ValidationError, match="question"):
        QueryRequest.model_validate({})


@pytest.mark.parametrize(("field", "value"), [("top_k", 0), ("top_k", -1), ("max_tokens", 0),
                                              ("max_tokens", 4097), ("temperature", -0.1),
                                              ("temperature", 2.5)])
def test_query_request_rejects_out_of_range_numbers(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        QueryRequest.model_validate({"question": "q", field: value})


@pytest.mark.parametrize("collection", ["", "1abc", "has-dash", "has space", "é", "a" * 256,
                                        "x;drop"])
def test_query_request_rejects_bad_collection_names(collection: str) -> None:
    with pytest.raises(ValidationError, match="collection"):
        QueryRequest(question="q", collection=collection)


@pytest.mark.parametrize("collection", ["handbook", "_private", "HR_2026", "a" * 255])
def test_query_request_accepts_good_collection_names(collection: str) -> None:
    assert QueryRequest(question="q", collection=collection).collection == collection


def test_query_request_is_frozen() -> None:
    q = QueryRequest(question="q")
    with pytest.raises(ValidationError):
        q.question = "other"  # type: ignore[misc]


@pytest.mark.parametrize("document_id", ["doc1", "leave-policy.md", "a:b_c-d.e", "9",
                                         "A" + "x" * 127])
def test_document_request_accepts_good_document_ids(document_id: str) -> None:
    doc = DocumentRequest(text="t", source="s.md", document_id=document_id)
    assert doc.document_id == document_id


@pytest.mark.parametrize("document_id", ["", "-leading-dash", ".hidden", "a/b", "a b",
                                         "A" + "x" * 128, "ümlaut"])
def test_document_request_rejects_bad_document_ids(document_id: str) -> None:
    with pytest.raises(ValidationError, match="document_id"):
        DocumentRequest(text="t", source="s.md", document_id=document_id)


def test_document_request_requires_text_and_source() -> None:
    with pytest.raises(ValidationError) as info:
        DocumentRequest.model_validate({"text": "", "source": ""})
    assert {e["loc"][0] for e in info.value.errors()} == {"text", "source"}


def test_document_request_rejects_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="owner"):
        DocumentRequest.model_validate({"text": "t", "source": "s", "owner": "me"})


def test_document_request_metadata_values_must_be_scalars() -> None:
    assert DocumentRequest(text="t", source="s", metadata={"dept": "hr", "year": 2026,
                                                           "draft": False}).metadata
    with pytest.raises(ValidationError, match="metadata"):
        DocumentRequest.model_validate({"text": "t", "source": "s",
                                        "metadata": {"nested": {"a": 1}}})
