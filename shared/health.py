"""Worker health in Redis: each worker publishes a short-lived heartbeat with its readiness.

The API's /readyz and each container's healthcheck read these keys; a dead worker's key
expires within three heartbeats, so it stops counting without anyone cleaning up.
`python -m services.<name>.health` runs `main()`: the healthcheck of one container.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from rq.worker import Worker

from shared.queue import connect
from shared.records import PREFIX
from shared.settings import Settings

ReadyCheck = Callable[[], tuple[bool, str]]


def health_key(service: str, worker: str) -> str:
    return f"{PREFIX}:health:{service}:{worker}"


def host_prefix(service: str) -> str:
    """How the names of this host's (this container's) workers of `service` start."""
    return f"{service}-{socket.gethostname()}-"


def heartbeat_ttl(interval: float) -> int:
    return max(3, int(interval * 3))


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
                ttl=heartbeat_ttl(self.interval))

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


def _registered(client: redis.Redis, name: str) -> bool:
    """Registered with RQ: the worker itself, or the lanes of a multi-lane worker."""
    prefix = Worker.redis_worker_namespace_prefix + name
    return bool(client.exists(prefix)) or any(client.scan_iter(match=f"{prefix}-lane*",
                                                                count=100))


def local_state(client: redis.Redis, service: str, name_prefix: str, max_age: float,
                now: float | None = None) -> tuple[bool, str]:
    """(healthy, why) for the workers of `service` whose names start with `name_prefix`:
    healthy when one has a fresh heartbeat, says it is ready, and is registered with RQ."""
    now = time.time() if now is None else now
    mine = [b for b in workers(client, service) if b["worker"].startswith(name_prefix)]
    if not mine:
        return False, f"no heartbeat from a {service} worker named {name_prefix}*"
    reasons = []
    for beat in mine:
        age = now - float(beat["at"])
        if age > max_age:
            reasons.append(f"{beat['worker']}: heartbeat {age:.0f} s old")
        elif not beat["ready"]:
            reasons.append(f"{beat['worker']}: not ready: {beat['detail']}")
        elif not _registered(client, beat["worker"]):
            reasons.append(f"{beat['worker']}: not registered with RQ")
        else:
            return True, f"{beat['worker']}: {beat['detail']}"
    return False, "; ".join(reasons)


def main(service: str) -> int:
    """The container healthcheck: exit 0 when this container's worker is healthy, 1 if not,
    with a one-line reason either way."""
    settings = Settings()
    client = connect(settings, timeout=5)  # a check answers, Redis down or not
    try:
        healthy, detail = local_state(client, service, settings.worker_name or
                                      host_prefix(service),
                                      max_age=heartbeat_ttl(settings.worker_heartbeat))
    except redis.RedisError as exc:
        healthy, detail = False, f"redis unreachable: {type(exc).__name__}: {exc}"
    finally:
        client.close()
    # One line: Docker keeps the output of the last checks for `docker inspect`.
    detail = " ".join(detail.split())
    print(f"{service} {'healthy' if healthy else 'unhealthy'}: {detail}", flush=True)
    return 0 if healthy else 1
