"""services/generator/tokens.py over httpx.MockTransport: the engine's count, its context
length, and a bound when the engine cannot count."""

from __future__ import annotations

import json

import httpx
import pytest

from services.generator.tokens import EngineTokens, byte_count

pytestmark = pytest.mark.unit


def tokens_with(handler) -> tuple[EngineTokens, list[dict]]:  # type: ignore[no-untyped-def]
    seen: list[dict] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append({"path": request.url.path, **json.loads(request.content)})
        return handler(request)

    counter = EngineTokens("http://engine:8000/v1", "smol", context_len=2048)
    counter._client = httpx.Client(base_url="http://engine:8000",
                                   transport=httpx.MockTransport(record))
    return counter, seen


def test_counts_with_the_engine_and_learns_its_context_length() -> None:
    counter, seen = tokens_with(lambda r: httpx.Response(200, json={
        "count": 7, "max_model_len": 8192, "tokens": [1] * 7}))
    assert counter.count("𝔥𝔬𝔴") == 7
    assert counter.context_len == 8192
    assert seen == [{"path": "/tokenize", "model": "smol", "prompt": "𝔥𝔬𝔴",
                     "add_special_tokens": False}]
    assert counter.count("𝔥𝔬𝔴") == 7 and len(seen) == 1  # counted once


def test_an_engine_without_tokenize_is_counted_in_bytes_from_then_on() -> None:
    counter, seen = tokens_with(lambda r: httpx.Response(404, json={"detail": "Not Found"}))
    assert counter.count("𝔥𝔬𝔴 a") == byte_count("𝔥𝔬𝔴 a") == 14
    assert counter.count("other") == 5
    assert len(seen) == 1 and not counter.supported


def test_an_engine_that_does_not_answer_is_counted_in_bytes_for_now() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    counter, _ = tokens_with(down)
    assert counter.count("abc") == 3
    assert counter.supported  # asked again next time: it may be back
