"""The generator's work as a pure function over an `Engine`: prompt, generate, cite."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.generator import prompt
from services.generator.engine import EngineError, EngineUnavailable, Generation
from shared.jobs import ErrorInfo, GenerateJob, QueryStatus


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


def answer(engine: Engine, job: GenerateJob, *, max_context_chars: int, timeout_s: float,
           should_stop: Callable[[], str | None],
           on_delta: Callable[[Generation], None] | None = None) -> Outcome:
    """Answer `job.question` from `job.chunks`, or say plainly that nothing relevant was found."""
    if not job.chunks:
        return Outcome(QueryStatus.SUCCEEDED, prompt.NO_CONTEXT_ANSWER)
    messages, used = prompt.build_messages(job.question, job.chunks, max_context_chars)
    chunks = job.chunks[:used]
    try:
        gen = engine.stream(messages, max_tokens=job.params.max_tokens,
                            temperature=job.params.temperature,
                            deadline=time.time() + timeout_s, should_stop=should_stop,
                            on_delta=on_delta)
    except EngineUnavailable as exc:
        return Outcome(QueryStatus.FAILED, "", error=ErrorInfo(
            code="engine_unavailable", message=f"the generation engine is unreachable: {exc}"))
    except EngineError as exc:
        return Outcome(QueryStatus.FAILED, "", error=ErrorInfo(code="engine_error",
                                                               message=str(exc)))
    text = gen.text.strip()
    usage = {"prompt_tokens": gen.prompt_tokens,
             "completion_tokens": gen.completion_tokens or len(gen.deltas)}
    outcome = Outcome(QueryStatus.SUCCEEDED, text, prompt.citations(chunks, text), usage,
                      first_token_s=gen.first_token_s)
    if gen.stopped == "timeout":
        outcome.status = QueryStatus.TIMED_OUT
        outcome.error = ErrorInfo(code="generation_timeout",
                                  message=f"generation took longer than {timeout_s:g} s; "
                                          "the partial answer is kept")
    elif gen.stopped == "cancelled":
        outcome.status = QueryStatus.CANCELLED
    return outcome
