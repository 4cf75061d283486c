"""The generator's work as a pure function over an `Engine`: prompt, generate, cite."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.generator import prompt
from services.generator.engine import EngineError, EngineUnavailable, Generation
from services.generator.trust import Scale, Trust, assess
from shared.jobs import ErrorInfo, GenerateJob, QueryStatus


class Tokens(Protocol):
    """Counts tokens as the engine does (services/generator/tokens.py)."""

    context_len: int  # the engine's context length, prompt and answer together

    def count(self, text: str) -> int: ...


class Engine(Protocol):
    def stream(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float,
               deadline: float, should_stop: Callable[[], str | None],
               on_delta: Callable[[Generation], None] | None = None) -> Generation: ...


@dataclass
class Outcome:
    status: QueryStatus
    answer: str
    citations: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=lambda: {"prompt_tokens": 0,
                                                           "completion_tokens": 0})
    error: ErrorInfo | None = None
    first_token_s: float | None = None
    trust: Trust | None = None  # None when the engine gave no answer to judge
    engine_s: float | None = None  # time spent in the engine call


def answer(engine: Engine, job: GenerateJob, *, tokens: Tokens, max_context_tokens: int,
           timeout_s: float, should_stop: Callable[[], str | None],
           on_delta: Callable[[Generation], None] | None = None,
           scale: Scale | None = None) -> Outcome:
    """Answer `job.question` from `job.chunks`, or say plainly that nothing relevant was found.
    The prompt and the answer fit the engine's context, counted in its `tokens`. `scale` sets
    how the answer's trust is scored (see services/generator/trust.py)."""
    scale = scale or Scale()
    if not job.chunks:
        return Outcome(QueryStatus.SUCCEEDED, prompt.NO_CONTEXT_ANSWER,
                       trust=assess(prompt.NO_CONTEXT_ANSWER, [], scale))
    fixed = prompt.fixed_tokens(tokens.count)  # (the first count learns the context length)
    budget = prompt.plan(tokens.context_len, fixed, job.params.max_tokens, max_context_tokens)
    messages, used = prompt.build_messages(job.question, job.chunks, budget, tokens.count)
    chunks = job.chunks[:used]
    engine_started = time.perf_counter()
    try:
        gen = engine.stream(messages, max_tokens=budget.max_tokens,
                            temperature=job.params.temperature,
                            deadline=time.time() + timeout_s, should_stop=should_stop,
                            on_delta=on_delta)
    except EngineUnavailable as exc:
        return Outcome(QueryStatus.FAILED, "", error=ErrorInfo(
            code="engine_unavailable", message=f"the generation engine is unreachable: {exc}"))
    except EngineError as exc:
        return Outcome(QueryStatus.FAILED, "", error=ErrorInfo(code="engine_error",
                                                               message=str(exc)))
    engine_s = time.perf_counter() - engine_started
    text = gen.text.strip()
    usage = {"prompt_tokens": gen.prompt_tokens,
             "completion_tokens": gen.completion_tokens or len(gen.deltas)}
    citations = prompt.citations(chunks, text)
    outcome = Outcome(QueryStatus.SUCCEEDED, text, citations, usage,
                      first_token_s=gen.first_token_s, engine_s=engine_s,
                      trust=assess(text, citations, scale))
    if gen.stopped == "timeout":
        outcome.status = QueryStatus.TIMED_OUT
        outcome.error = ErrorInfo(code="generation_timeout",
                                  message=f"generation took longer than {timeout_s:g} s; "
                                          "the partial answer is kept")
    elif gen.stopped == "cancelled":
        outcome.status = QueryStatus.CANCELLED
    return outcome
