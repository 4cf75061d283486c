"""Text that takes several tokens per character (odd Unicode) still fits the engine's context:
the generator budgets its prompt in the engine's own tokens, so a hostile question or document
gets an answer, not engine_error. Real stages: Valkey + RQ, MiniLM, Milvus Lite, vLLM (tiny
Llama, 2048-token context)."""

from __future__ import annotations

import asyncio

import pytest

from services.api.app import create_app
from tests.conftest import KEY_A

pytestmark = pytest.mark.integration

A = {"Authorization": f"Bearer {KEY_A}"}
# Astral-plane letters, emoji with joiners, stacked combining marks, CJK, right-to-left: each
# character is one to several tokens, where English takes about a quarter of one.
ODD = "𝔥𝔬𝔴 𝔩𝔬𝔫𝔤 🏖️👩‍💻🎉 e\u0301\u0301\u0301 𠜎𠜱 休暇は何日 \u200fכמה ימי\u200e "


async def _settle(workers) -> None:  # type: ignore[no-untyped-def]
    await asyncio.to_thread(workers.drain)


@pytest.fixture
async def api(aiohttp_client, workers):  # type: ignore[no-untyped-def]
    return await aiohttp_client(create_app(workers.settings))


async def test_an_odd_unicode_question_over_odd_unicode_passages_succeeds(api, workers):
    text = (ODD * 400)[:12000]  # ~40 chunks, each several times the tokens of its characters
    resp = await api.post("/v1/documents", json={"text": text, "source": "odd.md",
                                                 "document_id": "odd"}, headers=A)
    assert resp.status == 202
    await _settle(workers)
    doc = await (await api.get("/v1/documents/odd", headers=A)).json()
    assert doc["status"] == "indexed", doc

    question = (ODD * 200)[:workers.settings.query_max_question_chars]  # the longest allowed
    locations = []
    for extra in ({}, {"top_k": 20, "max_tokens": 4096}):  # as it comes, and at the limits
        resp = await api.post("/v1/queries", json={"question": question, **extra}, headers=A)
        assert resp.status == 202, await resp.text()
        locations.append(resp.headers["Location"])
    await _settle(workers)
    for location in locations:
        view = await (await api.get(location, headers=A)).json()
        assert view["status"] == "succeeded", view["error"]
        assert view["citations"], "the odd passages were retrieved and put in the prompt"
        usage = view["usage"]
        # Most of the context (half of it at least, when the answer may be long), never over.
        assert 900 < usage["prompt_tokens"] < 2048, usage
        assert usage["prompt_tokens"] + usage["completion_tokens"] <= 2048
