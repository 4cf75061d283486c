"""shared/records.py: the pure helpers (owner ids and the client-facing views)."""

from __future__ import annotations

import json
import re
import time

import pytest

from shared.records import document_view, owner_of, query_view

pytestmark = pytest.mark.unit


def test_owner_of_is_stable() -> None:
    assert owner_of("secret-key-1") == owner_of("secret-key-1")


def test_owner_of_differs_per_key() -> None:
    assert owner_of("secret-key-1") != owner_of("secret-key-2")


def test_owner_of_is_short_hex_without_the_key() -> None:
    owner = owner_of("abc123")
    assert re.fullmatch(r"[0-9a-f]{24}", owner)
    assert "abc123" not in owner


def raw_query(**extra: str) -> dict[str, str]:
    raw = {"id": "q1", "owner": "o", "status": "succeeded", "question": "How long?",
           "params": '{"top_k":4}', "created_at": "1000.0", "updated_at": "1001.0"}
    raw.update(extra)
    return raw


def test_query_view_maps_stage_timings() -> None:
    view = query_view(raw_query(w_embed="12.3456", t_embed="40", w_retrieve="1.5",
                                t_generate="900.125", finished_at="1001.5"))
    assert view["timings_ms"] == {"embed_queued": 12.35, "embed": 40.0, "retrieve_queued": 1.5,
                                  "generate": 900.12, "total": 1500.0}


def test_query_view_total_of_unfinished_query_runs_to_now() -> None:
    created = time.time() - 2.0
    view = query_view(raw_query(created_at=str(created), status="generating"))
    assert 2000.0 <= view["timings_ms"]["total"] < 60_000
    assert view["finished_at"] is None


def test_query_view_defaults() -> None:
    view = query_view(raw_query())
    assert view["answer"] is None
    assert view["citations"] == []
    assert view["usage"] == {"prompt_tokens": 0, "completion_tokens": 0}
    assert view["error"] is None
    assert view["created_at"] == 1000.0


def test_query_view_parses_stored_json_fields() -> None:
    error = {"code": "engine_error", "message": "engine answered 400: bad"}
    citations = [{"index": 1, "cited": True}]
    view = query_view(raw_query(status="failed", answer="", error=json.dumps(error),
                                citations=json.dumps(citations), finished_at="1002",
                                usage='{"prompt_tokens":5,"completion_tokens":2}'))
    assert view["error"] == error
    assert view["citations"] == citations
    assert view["usage"] == {"prompt_tokens": 5, "completion_tokens": 2}
    assert view["answer"] == ""
    assert view["finished_at"] == 1002.0


def test_query_view_hides_internal_fields() -> None:
    view = query_view(raw_query(w_embed="1", deadline="2000"))
    assert set(view) == {"id", "status", "question", "answer", "citations", "timings_ms",
                         "usage", "error", "created_at", "finished_at", "trust_score",
                         "low_trust", "trust", "feedback"}


def test_query_view_without_trust_or_feedback_shows_nulls() -> None:
    view = query_view(raw_query())
    assert (view["trust_score"], view["low_trust"], view["trust"], view["feedback"]) == \
        (None, None, None, None)


def test_query_view_surfaces_trust_score_flag_and_feedback() -> None:
    trust = {"score": 0.31, "retrieval": 0.5, "support": 0.2, "abstained": False,
             "low_trust": True, "cited_scores": [0.45], "threshold": 0.4}
    feedback = {"rating": "down", "comment": "wrong city", "at": 1003.0}
    view = query_view(raw_query(trust=json.dumps(trust), feedback=json.dumps(feedback)))
    assert view["trust_score"] == 0.31 and view["low_trust"] is True
    assert view["trust"] == trust
    assert view["feedback"] == feedback


def raw_document(**extra: str) -> dict[str, str]:
    raw = {"document_id": "leave-policy", "owner": "o", "status": "indexed",
           "source": "leave-policy.md", "collection": "handbook", "chars": "5120",
           "chunks": "8", "metadata": '{"dept":"hr"}', "error": "", "created_at": "10",
           "updated_at": "12.5", "generation": "3"}
    raw.update(extra)
    return raw


def test_document_view() -> None:
    assert document_view(raw_document()) == {
        "id": "leave-policy", "status": "indexed", "source": "leave-policy.md",
        "collection": "handbook", "chunks": 8, "chars": 5120, "metadata": {"dept": "hr"},
        "error": None, "created_at": 10.0, "updated_at": 12.5}


def test_document_view_defaults_and_error() -> None:
    raw = raw_document(status="failed", error='{"code":"embed_failed","message":"x"}')
    del raw["chunks"], raw["chars"], raw["metadata"]
    view = document_view(raw)
    assert (view["chunks"], view["chars"], view["metadata"]) == (0, 0, {})
    assert view["error"] == {"code": "embed_failed", "message": "x"}
