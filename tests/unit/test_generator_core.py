"""services/generator/core.py: answer() over a fake engine."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from services.generator import prompt
from services.generator.core import answer
from services.generator.engine import EngineError, EngineUnavailable, Generation
from services.generator.trust import Scale
from shared.jobs import Chunk, GenerateJob, QueryParams, QueryStatus

pytestmark = pytest.mark.unit


class FakeEngine:
    """Returns a prepared Generation (or raises) and records what it was asked."""

    def __init__(self, result: Generation | Exception) -> None:
        self.result = result
        self.calls: list[dict[str, Any]] = []

    def stream(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float,
               deadline: float, should_stop: Callable[[], str | None],
               on_delta: Callable[[Generation], None] | None = None) -> Generation:
        self.calls.append({"messages": messages, "max_tokens": max_tokens,
                           "temperature": temperature, "deadline": deadline,
                           "should_stop": should_stop, "on_delta": on_delta})
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def make_job(chunks: list[Chunk] | None = None, max_tokens: int = 77,
             temperature: float = 0.3) -> GenerateJob:
    if chunks is None:
        chunks = [Chunk(document_id="sec", chunk_id="sec:0", source="security.pdf",
                        text="Passwords must be at least 14 characters long.", score=0.81234),
                  Chunk(document_id="it", chunk_id="it:3", source="it-help.txt",
                        text="Reset your password at the self-service portal.", score=0.6)]
    return GenerateJob(query_id="q1", question="How long must a password be?",
                       params=QueryParams(top_k=4, collection="handbook",
                                          max_tokens=max_tokens, temperature=temperature),
                       chunks=chunks)


def never_stop() -> str | None:
    return None


class CharTokens:
    """A fake engine tokenizer: one token per character, a 2048-token context."""

    context_len = 2048

    def count(self, text: str) -> int:
        return len(text)


def budget_for(job: GenerateJob, max_context_tokens: int = 1500) -> prompt.Budget:
    return prompt.plan(2048, prompt.fixed_tokens(CharTokens().count), job.params.max_tokens,
                       max_context_tokens)


def run(engine: FakeEngine, job: GenerateJob | None = None, **kw: Any):
    kw.setdefault("tokens", CharTokens())
    kw.setdefault("max_context_tokens", 1500)
    kw.setdefault("timeout_s", 30.0)
    return answer(engine, job or make_job(), should_stop=never_stop, **kw)


def test_no_chunks_answers_no_context_without_calling_engine() -> None:
    engine = FakeEngine(Generation(text="should not be used"))
    outcome = run(engine, make_job(chunks=[]))
    assert outcome.status == QueryStatus.SUCCEEDED
    assert outcome.answer == prompt.NO_CONTEXT_ANSWER
    assert outcome.citations == []
    assert outcome.error is None
    assert engine.calls == []


def test_normal_answer_succeeds_with_mapped_citations() -> None:
    engine = FakeEngine(Generation(text="  At least 14 characters [1].  ", prompt_tokens=120,
                                   completion_tokens=9, finish_reason="stop",
                                   first_token_s=0.25))
    outcome = run(engine)
    assert outcome.status == QueryStatus.SUCCEEDED
    assert outcome.answer == "At least 14 characters [1]."
    assert outcome.error is None
    assert outcome.usage == {"prompt_tokens": 120, "completion_tokens": 9}
    assert outcome.first_token_s == 0.25
    assert [(c["index"], c["cited"], c["document_id"], c["chunk_id"], c["source"], c["score"])
            for c in outcome.citations] == [
        (1, True, "sec", "sec:0", "security.pdf", 0.8123),
        (2, False, "it", "it:3", "it-help.txt", 0.6)]
    assert outcome.citations[0]["text"] == "Passwords must be at least 14 characters long."


def test_engine_receives_params_prompt_and_callbacks() -> None:
    engine = FakeEngine(Generation(text="ok"))
    job = make_job(max_tokens=33, temperature=0.7)

    def on_delta(_: Generation) -> None:
        pass

    before = time.time()
    answer(engine, job, tokens=CharTokens(), max_context_tokens=1500, timeout_s=45.0,
           should_stop=never_stop, on_delta=on_delta)
    (call,) = engine.calls
    assert call["max_tokens"] == 33
    assert call["temperature"] == 0.7
    assert before + 45.0 <= call["deadline"] <= time.time() + 45.0
    assert call["should_stop"] is never_stop
    assert call["on_delta"] is on_delta
    messages, _ = prompt.build_messages(job.question, job.chunks, budget_for(job),
                                        CharTokens().count)
    assert call["messages"] == messages


def test_an_answer_longer_than_the_context_allows_is_asked_shorter() -> None:
    engine = FakeEngine(Generation(text="ok"))
    run(engine, make_job(max_tokens=4096))
    (call,) = engine.calls
    prompt_tokens = sum(len(m["content"]) + prompt.TEMPLATE_TOKENS for m in call["messages"])
    assert call["max_tokens"] < 4096
    assert prompt_tokens + call["max_tokens"] <= CharTokens.context_len


def test_completion_tokens_fall_back_to_delta_count() -> None:
    engine = FakeEngine(Generation(text="a b c", prompt_tokens=10, completion_tokens=0,
                                   deltas=["a", " b", " c"]))
    assert run(engine).usage == {"prompt_tokens": 10, "completion_tokens": 3}


def test_citations_cover_only_passages_in_the_prompt() -> None:
    chunks = [Chunk(document_id=f"d{i}", chunk_id=f"d{i}:0", source=f"s{i}.md",
                    text="word " * 120, score=0.9 - i / 10) for i in range(4)]
    engine = FakeEngine(Generation(text="See [1] and [4]."))
    outcome = run(engine, make_job(chunks=chunks), max_context_tokens=800)
    _, used = prompt.build_messages("q", chunks, budget_for(make_job(), 800), len)
    assert used < 4
    assert len(outcome.citations) == used
    assert [c["cited"] for c in outcome.citations][0] is True
    assert not any(c["index"] == 4 for c in outcome.citations)


def test_engine_unavailable_fails_with_engine_unavailable() -> None:
    outcome = run(FakeEngine(EngineUnavailable("ConnectError: refused")))
    assert outcome.status == QueryStatus.FAILED
    assert outcome.answer == ""
    assert outcome.citations == []
    assert outcome.error is not None
    assert outcome.error.code == "engine_unavailable"
    assert "ConnectError: refused" in outcome.error.message


def test_engine_error_fails_with_engine_error() -> None:
    outcome = run(FakeEngine(EngineError("engine answered 400: too long")))
    assert outcome.status == QueryStatus.FAILED
    assert outcome.error is not None
    assert outcome.error.code == "engine_error"
    assert outcome.error.message == "engine answered 400: too long"


def test_timeout_keeps_partial_answer_and_reports_generation_timeout() -> None:
    engine = FakeEngine(Generation(text="At least 14 [1", stopped="timeout",
                                   deltas=["At", " least", " 14", " [1"]))
    outcome = run(engine, timeout_s=2.5)
    assert outcome.status == QueryStatus.TIMED_OUT
    assert outcome.answer == "At least 14 [1"
    assert outcome.error is not None
    assert outcome.error.code == "generation_timeout"
    assert "2.5 s" in outcome.error.message
    assert len(outcome.citations) == 2


def test_cancelled_generation_is_cancelled_without_error() -> None:
    outcome = run(FakeEngine(Generation(text="At least", stopped="cancelled")))
    assert outcome.status == QueryStatus.CANCELLED
    assert outcome.answer == "At least"
    assert outcome.error is None


def test_an_answer_carries_its_trust_and_engine_time() -> None:
    engine = FakeEngine(Generation(text="Passwords must be at least 14 characters [1]."))
    outcome = run(engine, scale=Scale(floor=0.25, full=0.65, threshold=0.4))
    assert outcome.trust is not None
    assert outcome.trust.cited_scores == [0.8123]
    assert outcome.trust.retrieval == 1.0 and outcome.trust.support == 1.0
    assert outcome.trust.score == 1.0 and not outcome.trust.low_trust
    assert outcome.engine_s is not None and outcome.engine_s >= 0


def test_no_context_answer_abstains_with_zero_trust() -> None:
    outcome = run(FakeEngine(Generation(text="unused")), make_job(chunks=[]))
    assert outcome.trust is not None
    assert outcome.trust.abstained and outcome.trust.score == 0.0 and outcome.trust.low_trust
    assert outcome.engine_s is None


def test_a_failed_generation_has_no_trust() -> None:
    outcome = run(FakeEngine(EngineUnavailable("refused")))
    assert outcome.trust is None
