"""Worker health in Redis: each worker publishes a short-lived heartbeat with its readiness.

The API's /readyz and each container's healthcheck read these keys; a dead worker's key
expires within three heartbeats, so it stops counting without anyone cleaning up.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from shared.records import PREFIX

ReadyCheck = Callable[[], tuple[bool, str]]


def health_key(service: str, worker: str) -> str:
    return f"{PREFIX}:health:{service}:{worker}"


def publish(client: redis.Redis, service: str, worker: str, ready: bool, detail: str,
            ttl: int) -> None:
    body = {"service": service, "worker": worker, "ready": ready, "detail": detail,
            "at": time.time()}
    client.set(health_key(service, worker), json.dumps(body), ex=ttl)


def workers(client: redis.Redis, service: str) -> list[dict[str, Any]]:
    """Every worker of `service` whose heartbeat is fresh."""
    keys = list(client.scan_iter(match=health_key(service, "*"), count=200))
    values = client.mget(keys) if keys else []
    return [json.loads(v) for v in values if v]


class Heartbeat(threading.Thread):
    """Publishes `check()` every `interval` seconds until stopped."""

    def __init__(self, client: redis.Redis, service: str, worker: str, check: ReadyCheck,
                 interval: float) -> None:
        super().__init__(name=f"heartbeat-{service}", daemon=True)
        self.client, self.service, self.worker = client, service, worker
        self.check, self.interval = check, interval
        self._stop_event = threading.Event()

    def beat(self) -> None:
        try:
            ready, detail = self.check()
        except Exception as exc:  # a failing check means "not ready", never a dead thread
            ready, detail = False, f"{type(exc).__name__}: {exc}"
        publish(self.client, self.service, self.worker, ready, detail,
                ttl=max(3, int(self.interval * 3)))

    def run(self) -> None:
        while not self._stop_event.is_set():
            # Redis away: the key expires and readers see us as gone, which is true.
            with contextlib.suppress(redis.RedisError):
                self.beat()
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        with contextlib.suppress(redis.RedisError):
            self.client.delete(health_key(self.service, self.worker))
