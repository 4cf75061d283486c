"""A client for an OpenAI-compatible engine (vLLM): streamed chat completions that can stop.

Closing the stream is how a generation is aborted: vLLM aborts a request whose client has
gone, so the engine stops spending time on it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx


class EngineUnavailable(Exception):
    """The engine could not be reached or is not serving."""


class EngineError(Exception):
    """The engine refused the request (a 4xx/5xx with a message)."""


@dataclass
class Generation:
    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    stopped: str | None = None  # why we stopped it early: "cancelled", "timeout"
    first_token_s: float | None = None
    deltas: list[str] = field(default_factory=list, repr=False)


@dataclass
class OpenAIEngine:
    base_url: str  # ends in /v1
    model: str
    api_key: str | None = None
    connect_timeout: float = 5.0
    extra_body: dict[str, Any] = field(default_factory=dict)
    _client: httpx.Client | None = field(default=None, init=False, repr=False)

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._client = httpx.Client(base_url=self.base_url.rstrip("/"), headers=headers,
                                        timeout=httpx.Timeout(60.0, connect=self.connect_timeout))
        return self._client

    def ready(self) -> tuple[bool, str]:
        """Whether the engine answers and serves our model."""
        try:
            response = self.client.get("/models", timeout=5.0)
            response.raise_for_status()
            served = [m.get("id") for m in response.json().get("data", [])]
        except (httpx.HTTPError, ValueError) as exc:
            return False, f"engine unreachable: {type(exc).__name__}: {exc}"
        if self.model not in served:
            return False, f"engine does not serve {self.model!r} (it serves {served})"
        return True, f"engine serves {self.model}"

    def stream(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float,
               deadline: float, should_stop: Callable[[], str | None],
               on_delta: Callable[[Generation], None] | None = None) -> Generation:
        """Generate, calling `should_stop` between tokens; returns what was generated."""
        body = {**self.extra_body, "model": self.model, "messages": messages,
                "max_tokens": max_tokens,
                "temperature": temperature, "stream": True,
                "stream_options": {"include_usage": True}}
        result = Generation()
        started = time.monotonic()
        try:
            with self.client.stream("POST", "/chat/completions", json=body,
                                    timeout=httpx.Timeout(max(1.0, deadline - time.time()),
                                                          connect=self.connect_timeout)) as resp:
                if resp.status_code >= 400:
                    raise EngineError(_error_message(resp))
                for event in _sse_events(resp.iter_lines()):
                    _apply(result, event, started)
                    if on_delta is not None and event.get("choices"):
                        on_delta(result)
                    reason = "timeout" if time.time() > deadline else should_stop()
                    if reason:
                        result.stopped = reason
                        break  # leaving the `with` closes the stream: the engine aborts it
        except httpx.TimeoutException:
            result.stopped = "timeout"
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise EngineUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return result

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _error_message(resp: httpx.Response) -> str:
    resp.read()
    try:
        detail = resp.json()
        detail = detail.get("error", detail) if isinstance(detail, dict) else detail
        message = detail.get("message", str(detail)) if isinstance(detail, dict) else str(detail)
    except ValueError:
        message = resp.text[:500]
    return f"engine answered {resp.status_code}: {message}"


def _sse_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        yield json.loads(data)


def _apply(result: Generation, event: dict[str, Any], started: float) -> None:
    for choice in event.get("choices") or []:
        delta = (choice.get("delta") or {}).get("content") or ""
        if delta:
            if result.first_token_s is None:
                result.first_token_s = time.monotonic() - started
            result.text += delta
            result.deltas.append(delta)
        if choice.get("finish_reason"):
            result.finish_reason = choice["finish_reason"]
    usage = event.get("usage")
    if usage:
        result.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        result.completion_tokens = int(usage.get("completion_tokens") or 0)
