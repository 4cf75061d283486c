"""While Redis is down (stopped, or hanging) the API answers 503 with a JSON error and
Retry-After on every endpoint that needs it, never a 500 and never a hang; when it is back,
requests succeed again. Each test runs its own Valkey, which it stops and starts."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from ragmesh.procs import Proc, free_port
from ragmesh.valkey import valkey_proc, wait_for_valkey
from services.api.app import create_app
from tests.conftest import KEY_A

pytestmark = pytest.mark.integration

A = {"Authorization": f"Bearer {KEY_A}"}
QUERY_ID = "0" * 32
NEEDS_REDIS = [("POST", "/v1/queries", {"question": "hi"}),
               ("GET", f"/v1/queries/{QUERY_ID}", None),
               ("GET", f"/v1/queries/{QUERY_ID}?wait=5", None),
               ("DELETE", f"/v1/queries/{QUERY_ID}", None),
               ("GET", f"/v1/queries/{QUERY_ID}/events", None),
               ("POST", "/v1/documents", {"text": "t", "source": "s.txt"}),
               ("GET", "/v1/documents", None),
               ("GET", "/v1/documents/doc-1", None),
               ("DELETE", "/v1/documents/doc-1", None),
               ("GET", "/openapi.json", None)]
# Far above what a request takes while Redis is down (about twice api_redis_timeout): a
# request that hits it hangs.
HANG = aiohttp.ClientTimeout(total=30)


class OwnValkey:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir, self.port = data_dir, free_port()
        self.proc: Proc | None = None
        self.url = ""

    def start(self) -> None:
        self.proc, self.url = valkey_proc(self.data_dir, "outage-pw", port=self.port,
                                          appendonly=False)
        self.proc.start()
        wait_for_valkey(self.proc, self.url)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.stop()

    def pause(self, paused: bool) -> None:
        assert self.proc is not None and self.proc.popen is not None
        self.proc.popen.send_signal(signal.SIGSTOP if paused else signal.SIGCONT)


@pytest.fixture
def own_valkey(tmp_path: Path) -> Iterator[OwnValkey]:
    server = OwnValkey(tmp_path / "valkey")
    server.start()
    yield server
    if server.proc is not None and server.proc.popen is not None:
        server.proc.popen.send_signal(signal.SIGCONT)
        server.proc.stop()


async def _all_unavailable(api) -> None:  # type: ignore[no-untyped-def]
    for method, path, body in NEEDS_REDIS:
        resp = await api.request(method, path, json=body, headers=A, timeout=HANG)
        assert resp.status == 503, (method, path, resp.status, await resp.text())
        assert resp.content_type == "application/json"
        assert (await resp.json())["error"]["code"] == "queue_unavailable"
        assert int(resp.headers["Retry-After"]) > 0
    assert (await api.get("/healthz", timeout=HANG)).status == 200
    ready = await api.get("/readyz", timeout=HANG)
    assert ready.status == 503
    assert (await ready.json())["checks"]["redis"] == "unreachable"
    # The scrape still works: Prometheus needs the API's own metrics during the outage.
    assert (await api.get("/metrics", headers=A, timeout=HANG)).status == 200


async def _serves_again(api) -> None:  # type: ignore[no-untyped-def]
    for _ in range(50):  # pooled connections to the old server fail once, then reconnect
        resp = await api.post("/v1/queries", json={"question": "back?"}, headers=A,
                              timeout=HANG)
        if resp.status == 202:
            break
        assert resp.status == 503, await resp.text()
        await asyncio.sleep(0.2)
    assert resp.status == 202
    assert (await api.get(resp.headers["Location"], headers=A)).status == 200
    assert (await api.get("/v1/documents", headers=A)).status == 200


async def test_redis_stopped_then_started_again(aiohttp_client, make_settings, own_valkey):
    api = await aiohttp_client(create_app(make_settings(redis_url=own_valkey.url)))
    assert (await api.post("/v1/queries", json={"question": "hi"}, headers=A)).status == 202
    own_valkey.stop()
    await _all_unavailable(api)
    own_valkey.start()
    await _serves_again(api)


async def test_redis_hanging_gives_503_after_the_timeout(aiohttp_client, make_settings,
                                                         own_valkey):
    # A paused server accepts connections and never answers: only timeouts end the wait.
    api = await aiohttp_client(create_app(make_settings(redis_url=own_valkey.url,
                                                        api_redis_timeout=0.5)))
    assert (await api.get("/v1/documents", headers=A)).status == 200
    own_valkey.pause(True)
    try:
        await _all_unavailable(api)
    finally:
        own_valkey.pause(False)
    await _serves_again(api)


async def test_an_event_stream_ends_with_an_error_event_when_redis_goes(
        aiohttp_client, make_settings, own_valkey):
    api = await aiohttp_client(create_app(make_settings(redis_url=own_valkey.url)))
    resp = await api.post("/v1/queries", json={"question": "hi"}, headers=A)
    stream = await api.get(resp.headers["Location"] + "/events", headers=A, timeout=HANG)
    assert stream.status == 200
    assert b"event: status" in await stream.content.readuntil(b"\n\n")
    own_valkey.stop()
    rest = (await stream.content.read()).decode()
    assert "event: error" in rest and "queue_unavailable" in rest
