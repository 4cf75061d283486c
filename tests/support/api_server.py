"""The real app on a real port, for clients that are not aiohttp's test client (schemathesis,
the synchronous CLI client): served from an event loop in a thread of its own."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web

from ragmesh.procs import free_port
from services.api.app import create_app
from shared.settings import Settings


class ServerThread:
    """The real app on 127.0.0.1:<free port>, on an event loop in a thread of its own."""

    def __init__(self, settings: Settings) -> None:
        self.settings, self.port = settings, free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.runner: web.AppRunner | None = None
        self.thread = threading.Thread(target=self._run, name="api-server", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.runner = web.AppRunner(create_app(self.settings), access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()

    def __enter__(self) -> str:
        self.thread.start()
        if not self.ready.wait(60):
            raise RuntimeError("the API did not start")
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
