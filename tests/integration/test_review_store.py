"""shared/review.py against a real Valkey: feedback on records, the bounded review queue."""

from __future__ import annotations

import json

import pytest

from shared.jobs import QueryParams, QueryStatus
from shared.records import QueryRecords
from shared.review import LOW_TRUST, RATED_DOWN, ReviewQueue, save_feedback

pytestmark = pytest.mark.integration

PARAMS = QueryParams(top_k=4, collection="handbook", max_tokens=8, temperature=0)
TRUST = {"score": 0.1, "retrieval": 0.5, "support": 0.2, "abstained": False, "low_trust": True,
         "cited_scores": [0.45], "threshold": 0.4}


@pytest.fixture
def queries(redis_client) -> QueryRecords:  # type: ignore[no-untyped-def]
    return QueryRecords(redis_client, ttl_seconds=3600)


def finished(queries: QueryRecords, owner: str = "alice", question: str = "Hotel cap?") -> str:
    query_id = queries.create(owner, question, PARAMS, deadline=60)
    queries.finish(query_id, QueryStatus.SUCCEEDED, answer="300 pounds [1].", trust=TRUST,
                   citations=[{"index": 1, "document_id": "d", "chunk_id": "00001",
                               "source": "expenses.html", "score": 0.45, "text": "245 pounds",
                               "cited": True}])
    return query_id


def test_feedback_is_stored_on_a_finished_record(queries):  # type: ignore[no-untyped-def]
    query_id = finished(queries)
    assert save_feedback(queries, query_id, {"rating": "down", "comment": "wrong", "at": 1.0})
    assert queries.get(query_id)["feedback"] == {"rating": "down", "comment": "wrong", "at": 1.0}
    assert queries.status(query_id) == "succeeded"


def test_feedback_never_recreates_a_gone_record(queries, redis_client):  # type: ignore[no-untyped-def]
    assert not save_feedback(queries, "missing", {"rating": "up"})
    assert not redis_client.exists(queries.key("missing"))


def test_kept_answers_are_listed_per_key_with_snapshot_and_reasons(queries, redis_client):  # type: ignore[no-untyped-def]
    review = ReviewQueue(redis_client, ttl_seconds=600, max_items=10)
    mine, other = finished(queries), finished(queries, owner="bob")
    assert review.keep(queries, mine, LOW_TRUST)
    assert review.keep(queries, other, LOW_TRUST)
    total, [item] = review.items("alice")
    assert total == 1
    assert item["id"] == mine and item["reasons"] == [LOW_TRUST]
    assert item["question"] == "Hotel cap?" and item["answer"] == "300 pounds [1]."
    assert item["collection"] == "handbook" and item["trust_score"] == 0.1
    assert item["citations"][0]["source"] == "expenses.html"


def test_two_reasons_accumulate_and_withdrawing_one_keeps_the_other(queries, redis_client):  # type: ignore[no-untyped-def]
    review = ReviewQueue(redis_client, ttl_seconds=600, max_items=10)
    query_id = finished(queries)
    review.keep(queries, query_id, LOW_TRUST)
    save_feedback(queries, query_id, {"rating": "down", "comment": None, "at": 2.0})
    review.keep(queries, query_id, RATED_DOWN)
    _, [item] = review.items("alice")
    assert item["reasons"] == [LOW_TRUST, RATED_DOWN]
    assert item["feedback"]["rating"] == "down"
    save_feedback(queries, query_id, {"rating": "up", "comment": None, "at": 3.0})
    review.drop(queries, query_id, RATED_DOWN)
    _, [item] = review.items("alice")
    assert item["reasons"] == [LOW_TRUST] and item["feedback"]["rating"] == "up"


def test_withdrawing_the_only_reason_forgets_the_answer(queries, redis_client):  # type: ignore[no-untyped-def]
    review = ReviewQueue(redis_client, ttl_seconds=600, max_items=10)
    query_id = finished(queries)
    review.keep(queries, query_id, RATED_DOWN)
    review.drop(queries, query_id, RATED_DOWN)
    assert review.items("alice") == (0, [])
    assert not list(redis_client.scan_iter(match="ragmesh:review:*"))


def test_the_queue_is_bounded_oldest_first(queries, redis_client):  # type: ignore[no-untyped-def]
    review = ReviewQueue(redis_client, ttl_seconds=600, max_items=2)
    ids = [finished(queries, question=f"q{i}") for i in range(3)]
    for n, query_id in enumerate(ids):
        review.keep(queries, query_id, LOW_TRUST, now=1_000_000.0 + n)
    total, items = review.items("alice", now=1_000_010.0)
    assert total == 2 and [i["id"] for i in items] == [ids[2], ids[1]]
    assert not redis_client.exists(f"ragmesh:review:alice:{ids[0]}")


def test_answers_older_than_the_ttl_are_not_listed(queries, redis_client):  # type: ignore[no-untyped-def]
    review = ReviewQueue(redis_client, ttl_seconds=60, max_items=10)
    old, new = finished(queries), finished(queries)
    review.keep(queries, old, LOW_TRUST, now=1_000_000.0)
    review.keep(queries, new, LOW_TRUST, now=1_000_050.0)
    total, items = review.items("alice", now=1_000_070.0)
    assert total == 1 and [i["id"] for i in items] == [new]
    assert 0 < redis_client.ttl(f"ragmesh:review:alice:{new}") <= 60


def test_the_snapshot_outlives_the_query_record(queries, redis_client):  # type: ignore[no-untyped-def]
    review = ReviewQueue(redis_client, ttl_seconds=600, max_items=10)
    query_id = finished(queries)
    review.keep(queries, query_id, LOW_TRUST)
    redis_client.delete(queries.key(query_id))
    _, [item] = review.items("alice")
    assert item["id"] == query_id and json.dumps(item)
