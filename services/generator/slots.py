"""Generation slots: a lease-based semaphore in Redis, one per engine, shared by every
generator worker and replica.

A slot is a member of a sorted set scored by its lease's expiry (Redis server time, so the
workers' clocks do not matter). Holders renew while they generate; a worker that dies stops
renewing and its slot frees itself when the lease runs out. Slots never leak.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import uuid

import redis

from shared.records import PREFIX

_NOW_MS = "local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"

# KEYS[1] slots; ARGV: holder, cap, lease_ms. Returns the slots held once acquired (the
# in-flight gauge), 0 when all are taken.
_ACQUIRE = _NOW_MS + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  return redis.call('ZCARD', KEYS[1])
end
local held = redis.call('ZCARD', KEYS[1])
if held < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
  return held + 1
end
return 0
"""

# Renew only a lease still held (XX): one that was reaped is not revived.
_RENEW = _NOW_MS + """
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
  return 1
end
return 0
"""

_COUNT = _NOW_MS + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""

# Give a slot back; returns the slots still held.
_RELEASE = "redis.call('ZREM', KEYS[1], ARGV[1])\n" + _COUNT


def engine_id(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:12]


class EngineSlots:
    """At most `cap` holders at once for one engine."""

    def __init__(self, client: redis.Redis, engine_url: str, cap: int, lease_s: float) -> None:
        self.r, self.url, self.cap = client, engine_url, cap
        self.lease_ms = int(lease_s * 1000)
        self.key = f"{PREFIX}:slots:{engine_id(engine_url)}"
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._count = client.register_script(_COUNT)
        self._release = client.register_script(_RELEASE)

    def try_acquire(self, holder: str) -> int:
        """The slots now held, this one included; 0 when none was free."""
        return int(self._acquire(keys=[self.key], args=[holder, self.cap, self.lease_ms]))

    def renew(self, holder: str) -> bool:
        return int(self._renew(keys=[self.key], args=[holder, self.lease_ms])) == 1

    def release(self, holder: str) -> int:
        """Give the slot back; returns the slots still held."""
        return int(self._release(keys=[self.key], args=[holder]))

    def in_flight(self) -> int:
        return int(self._count(keys=[self.key]))


class Lease:
    """A held slot, renewed in the background until released."""

    def __init__(self, slots: EngineSlots) -> None:
        self.slots = slots
        self.holder = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False
        self.in_flight = 0  # the engine's slots held, as last seen

    def _keep(self) -> None:
        interval = self.slots.lease_ms / 3000
        while not self._stop.wait(interval):
            try:
                if not self.slots.renew(self.holder):
                    self.lost = True
                    return
            except redis.RedisError:
                continue  # Redis away for a moment: the lease is long enough to try again

    def start(self) -> Lease:
        self._thread = threading.Thread(target=self._keep, name="slot-lease", daemon=True)
        self._thread.start()
        return self

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        with contextlib.suppress(redis.RedisError):  # else the lease expires on its own
            self.in_flight = self.slots.release(self.holder)

    def __enter__(self) -> Lease:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.release()
