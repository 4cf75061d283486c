"""A deliberately slow OpenAI-compatible engine for the timing-heavy generator tests.

It streams `tokens` chat deltas, `delay` seconds apart, and counts what an engine would see:
requests in flight now and at most, requests started, finished, and abandoned by their client
(what vLLM treats as an abort).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field

from aiohttp import web

from ragmesh.procs import free_port


@dataclass
class SlowEngine:
    model: str = "slow"
    tokens: int = 20
    delay: float = 0.05
    active: int = 0
    max_active: int = 0
    started: int = 0
    finished: int = 0
    abandoned: int = 0
    port: int = field(default_factory=free_port)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _runner: web.AppRunner | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _enter(self) -> None:
        with self._lock:
            self.active += 1
            self.started += 1
            self.max_active = max(self.max_active, self.active)

    def _leave(self, completed: bool) -> None:
        with self._lock:
            self.active -= 1
            if completed:
                self.finished += 1
            else:
                self.abandoned += 1

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        max_tokens = int(body.get("max_tokens") or self.tokens)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        self._enter()
        completed = False
        try:
            count = min(self.tokens, max_tokens)
            for i in range(count):
                await asyncio.sleep(self.delay)
                chunk = {"choices": [{"index": 0, "delta": {"content": f"tok{i} "},
                                      "finish_reason": None}]}
                await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            done = {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}
            usage = {"choices": [], "usage": {"prompt_tokens": 42, "completion_tokens": count}}
            for event in (done, usage):
                await response.write(f"data: {json.dumps(event)}\n\n".encode())
            await response.write(b"data: [DONE]\n\n")
            completed = True
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._leave(completed)
        return response

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": self.model}]})

    def start(self) -> SlowEngine:
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self._chat)
            app.router.add_get("/v1/models", self._models)
            self._runner = web.AppRunner(app, handler_cancellation=True)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", self.port)
            self._loop.run_until_complete(site.start())
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=serve, name="slow-engine", daemon=True).start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop and self._runner:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.active == 0:
                return True
            time.sleep(0.05)
        return False
