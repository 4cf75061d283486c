"""Trust on finished queries, feedback and the review loop, through the real API and stages."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from services.api.app import create_app
from services.generator.prompt import NO_CONTEXT_ANSWER
from tests.conftest import KEY_A, KEY_B

pytestmark = pytest.mark.integration

A = {"Authorization": f"Bearer {KEY_A}"}
B = {"Authorization": f"Bearer {KEY_B}"}
EXPENSES = ("Travel expenses. Hotels in London are capped at 245 pounds per night. Receipts are "
            "required for any claim over 20 pounds. Claims must be filed within 45 days.")


@pytest.fixture
async def api(aiohttp_client, workers):  # type: ignore[no-untyped-def]
    resp = await (client := await aiohttp_client(create_app(workers.settings))).post(
        "/v1/documents", json={"text": EXPENSES, "source": "expenses.html"}, headers=A)
    assert resp.status == 202
    await asyncio.to_thread(workers.drain)
    return client


async def _ask(api, workers, question: str, headers=A, **params) -> dict:  # type: ignore[no-untyped-def]
    resp = await api.post("/v1/queries", json={"question": question, **params}, headers=headers)
    assert resp.status == 202, await resp.text()
    await asyncio.to_thread(workers.drain)
    return await (await api.get(resp.headers["Location"], headers=headers)).json()


async def _rate(api, query_id: str, headers=A, **body):  # type: ignore[no-untyped-def]
    return await api.post(f"/v1/queries/{query_id}/feedback", json=body, headers=headers)


async def _review(api, headers=A) -> list[dict]:  # type: ignore[no-untyped-def]
    resp = await api.get("/v1/review", headers=headers)
    assert resp.status == 200
    return (await resp.json())["items"]


async def test_a_finished_answer_carries_its_trust_and_the_scores_it_rests_on(api, workers):
    view = await _ask(api, workers, "What is the nightly hotel limit in London?")
    assert view["status"] == "succeeded"
    trust = view["trust"]
    assert 0 <= view["trust_score"] == trust["score"] <= 1
    assert view["low_trust"] is (trust["score"] < workers.settings.trust_threshold)
    assert set(trust["cited_scores"]) <= {c["score"] for c in view["citations"]}
    assert 0 < trust["retrieval"] <= 1 and not trust["abstained"]


async def test_the_query_log_line_carries_question_chunks_engine_time_and_trust(api, workers):
    with capture_logs() as logs:
        view = await _ask(api, workers, "What is the nightly hotel limit in London?")
    [line] = [e for e in logs if e["event"] == "query_finished"]
    assert line["query_id"] == view["id"]
    assert line["question"] == "What is the nightly hotel limit in London?"
    assert [c[2] for c in line["chunks"]] == [c["score"] for c in view["citations"]]
    assert line["engine_ms"] > 0 and line["trust_score"] == view["trust_score"]
    assert line["low_trust"] is view["low_trust"]


async def test_an_unanswerable_question_is_flagged_and_kept_for_review(api, workers):
    view = await _ask(api, workers, "What is the capital of Peru?", collection="empty_kb")
    assert view["answer"] == NO_CONTEXT_ANSWER
    assert view["trust_score"] == 0.0 and view["low_trust"] is True
    assert view["trust"]["abstained"] is True
    [item] = await _review(api)
    assert item["id"] == view["id"] and item["reasons"] == ["low_trust"]
    assert item["collection"] == "empty_kb"
    assert await _review(api, headers=B) == []


async def test_rating_down_stores_feedback_keeps_the_answer_and_counts_it(api, workers):
    view = await _ask(api, workers, "What is the nightly hotel limit in London?",
                      top_k=1, max_tokens=4)
    resp = await _rate(api, view["id"], rating="down", comment="  wrong   city ")
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["id"] == view["id"]
    assert body["feedback"]["rating"] == "down" and body["feedback"]["comment"] == "wrong city"
    again = await (await api.get(f"/v1/queries/{view['id']}", headers=A)).json()
    assert again["feedback"] == body["feedback"] and again["status"] == "succeeded"
    [item] = [i for i in await _review(api) if i["id"] == view["id"]]
    assert "rated_down" in item["reasons"]
    assert item["question"] == view["question"] and item["answer"] == view["answer"]
    assert item["citations"] == view["citations"]
    metrics = await (await api.get("/metrics", headers=A)).text()
    assert 'ragmesh_feedback_total{rating="down"}' in metrics


async def test_rating_up_after_down_withdraws_the_review_reason(api, workers):
    view = await _ask(api, workers, "What is the nightly hotel limit in London?")
    await _rate(api, view["id"], rating="down")
    assert (await _rate(api, view["id"], rating="up")).status == 200
    kept = [i for i in await _review(api) if i["id"] == view["id"]]
    assert all("rated_down" not in i["reasons"] for i in kept)
    if view["low_trust"]:
        assert kept[0]["feedback"]["rating"] == "up"
    else:
        assert kept == []


async def test_feedback_on_another_keys_query_is_404_like_a_missing_one(api, workers):
    view = await _ask(api, workers, "What is the nightly hotel limit in London?")
    for query_id, headers in ((view["id"], B), ("nope", A)):
        resp = await _rate(api, query_id, headers=headers, rating="up")
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "query_not_found"
    assert (await (await api.get(f"/v1/queries/{view['id']}", headers=A)).json())[
        "feedback"] is None


async def test_feedback_on_an_unfinished_query_is_409(api):
    resp = await api.post("/v1/queries", json={"question": "hotel?"}, headers=A)
    query_id = (await resp.json())["id"]
    resp = await _rate(api, query_id, rating="up")
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "query_not_finished"


@pytest.mark.parametrize("body", [{"rating": "meh"}, {}, {"rating": "up", "stars": 5},
                                  {"rating": "down", "comment": "x" * 2001}])
async def test_bad_feedback_is_422(api, workers, body):
    view = await _ask(api, workers, "hotel?")
    resp = await _rate(api, view["id"], **body)
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "invalid_request"
