"""services/generator/engine.py: SSE parsing, error messages, streaming over a mock transport."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from services.generator.engine import (
    EngineError,
    EngineUnavailable,
    Generation,
    OpenAIEngine,
    _apply,
    _error_message,
    _sse_events,
)

pytestmark = pytest.mark.unit


def delta(content: str | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"role": "assistant"} if content is None else {"content": content}
    return {"choices": [{"index": 0, "delta": d, "finish_reason": finish}], "usage": None,
            **extra}


def usage_event(prompt: int, completion: int) -> dict[str, Any]:
    return {"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                                     "total_tokens": prompt + completion}}


def sse(events: list[dict[str, Any]], done: bool = True) -> list[str]:
    lines = []
    for event in events:
        lines += [f"data: {json.dumps(event)}", ""]
    return lines + (["data: [DONE]", ""] if done else [])


# --- _sse_events ------------------------------------------------------------------------------

def test_sse_events_yields_data_lines_and_skips_others() -> None:
    lines = ["", ": keep-alive", "event: message", 'data: {"a": 1}', 'data:{"b": 2}',
             "id: 7", 'data:   {"c": 3}  ']
    assert list(_sse_events(iter(lines))) == [{"a": 1}, {"b": 2}, {"c": 3}]


def test_sse_events_stops_at_done() -> None:
    lines = ['data: {"a": 1}', "data: [DONE]", 'data: {"after": true}']
    assert list(_sse_events(iter(lines))) == [{"a": 1}]


def test_sse_events_of_empty_stream_is_empty() -> None:
    assert list(_sse_events(iter([]))) == []


# --- _apply ---------------------------------------------------------------------------------

def test_apply_accumulates_text_and_deltas() -> None:
    result = Generation()
    for event in [delta(), delta("Hello"), delta(", "), delta("world")]:
        _apply(result, event, time.monotonic())
    assert result.text == "Hello, world"
    assert result.deltas == ["Hello", ", ", "world"]


def test_apply_role_only_chunk_sets_no_first_token() -> None:
    result = Generation()
    _apply(result, delta(), time.monotonic())
    _apply(result, delta(""), time.monotonic())
    assert result.first_token_s is None
    assert result.text == ""


def test_apply_sets_first_token_time_once() -> None:
    result = Generation()
    started = time.monotonic() - 1.0
    _apply(result, delta("A"), started)
    first = result.first_token_s
    assert first is not None and first >= 1.0
    _apply(result, delta("B"), started - 100)
    assert result.first_token_s == first


def test_apply_records_finish_reason() -> None:
    result = Generation()
    _apply(result, delta("x"), time.monotonic())
    assert result.finish_reason is None
    _apply(result, delta(finish="length"), time.monotonic())
    assert result.finish_reason == "length"


def test_apply_parses_usage_and_ignores_null_usage() -> None:
    result = Generation()
    _apply(result, usage_event(42, 7), time.monotonic())
    assert (result.prompt_tokens, result.completion_tokens) == (42, 7)
    _apply(result, delta("more"), time.monotonic())  # "usage": null
    assert (result.prompt_tokens, result.completion_tokens) == (42, 7)


def test_apply_tolerates_missing_fields() -> None:
    result = Generation()
    for event in [{}, {"choices": None}, {"choices": [{}]}, {"choices": [{"delta": None}]},
                  {"usage": {"prompt_tokens": None}}]:
        _apply(result, event, time.monotonic())
    assert result.text == "" and result.prompt_tokens == 0 and result.completion_tokens == 0


def test_a_whole_vllm_stream() -> None:
    events = [delta(), delta("Fourteen"), delta(" characters"), delta(" [1]."),
              delta(finish="stop"), usage_event(150, 4)]
    result = Generation()
    for event in _sse_events(iter(sse(events))):
        _apply(result, event, time.monotonic())
    assert result.text == "Fourteen characters [1]."
    assert result.finish_reason == "stop"
    assert (result.prompt_tokens, result.completion_tokens) == (150, 4)


# --- _error_message ---------------------------------------------------------------------------

def response(status: int, **kw: Any) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("POST", "http://x"), **kw)


def test_error_message_openai_shape() -> None:
    resp = response(400, json={"error": {"message": "max_tokens is too large", "code": 400}})
    assert _error_message(resp) == "engine answered 400: max_tokens is too large"


def test_error_message_vllm_flat_shape() -> None:
    resp = response(400, json={"object": "error", "message": "context too long",
                               "type": "BadRequestError", "code": 400})
    assert _error_message(resp) == "engine answered 400: context too long"


def test_error_message_error_as_string() -> None:
    assert _error_message(response(500, json={"error": "boom"})) == "engine answered 500: boom"


def test_error_message_without_message_shows_the_body() -> None:
    message = _error_message(response(404, json={"detail": "Not Found"}))
    assert message.startswith("engine answered 404: ")
    assert "Not Found" in message


def test_error_message_of_non_json_body_uses_text_truncated() -> None:
    assert _error_message(response(502, text="Bad Gateway")) == "engine answered 502: Bad Gateway"
    long = _error_message(response(503, text="x" * 2000))
    assert long == "engine answered 503: " + "x" * 500


# --- OpenAIEngine.stream over httpx.MockTransport (in memory, no network) ---------------------

def engine_with(handler: Any) -> OpenAIEngine:
    engine = OpenAIEngine(base_url="http://engine/v1", model="m")
    engine._client = httpx.Client(base_url="http://engine/v1",
                                  transport=httpx.MockTransport(handler))
    return engine


def stream_body(events: list[dict[str, Any]]) -> bytes:
    return ("\n".join(sse(events)) + "\n").encode()


def test_stream_collects_answer_and_sends_params() -> None:
    seen: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(json.loads(request.content), path=request.url.path)
        return httpx.Response(200, content=stream_body(
            [delta("Hi"), delta(" there", finish="stop"), usage_event(5, 2)]),
            headers={"content-type": "text/event-stream"})

    result = engine_with(handler).stream([{"role": "user", "content": "q"}], max_tokens=12,
                                         temperature=0.2, deadline=time.time() + 30,
                                         should_stop=lambda: None)
    assert (result.text, result.finish_reason, result.stopped) == ("Hi there", "stop", None)
    assert (result.prompt_tokens, result.completion_tokens) == (5, 2)
    assert seen["path"] == "/v1/chat/completions"
    assert (seen["model"], seen["max_tokens"], seen["temperature"], seen["stream"]) == \
        ("m", 12, 0.2, True)


def test_stream_stops_when_asked() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=stream_body([delta("a"), delta("b"), delta("c")]))

    calls: list[Generation] = []
    result = engine_with(handler).stream([], max_tokens=5, temperature=0,
                                         deadline=time.time() + 30,
                                         should_stop=lambda: "cancelled" if calls else None,
                                         on_delta=calls.append)
    assert result.stopped == "cancelled"
    assert result.text == "a"


def test_stream_past_deadline_stops_with_timeout() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=stream_body([delta("a"), delta("b")]))

    result = engine_with(handler).stream([], max_tokens=5, temperature=0,
                                         deadline=time.time() - 1, should_stop=lambda: None)
    assert result.stopped == "timeout"
    assert result.text == "a"


def test_stream_error_status_raises_engine_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": "bad request"}})

    with pytest.raises(EngineError, match="engine answered 400: bad request"):
        engine_with(handler).stream([], max_tokens=5, temperature=0,
                                    deadline=time.time() + 30, should_stop=lambda: None)


def test_stream_connect_error_raises_engine_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(EngineUnavailable, match="ConnectError"):
        engine_with(handler).stream([], max_tokens=5, temperature=0,
                                    deadline=time.time() + 30, should_stop=lambda: None)
