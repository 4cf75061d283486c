"""What `appendfsync always` and WAITAOF cost on this machine: write latency of a scratch
Valkey with each fsync policy, and the wait an API POST adds to make its job durable."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from ragmesh.valkey import valkey_proc, wait_for_valkey
from shared.queue import persisted


def _measure(client: redis.Redis, writes: int, waits: int) -> dict[str, float]:
    lat = []
    for _ in range(writes):  # what a generator does for every token: one XADD
        started = time.perf_counter()
        client.xadd("bench:events", {"type": "delta", "text": "tok"})
        lat.append(time.perf_counter() - started)
    durable = []
    for _ in range(waits):  # what the API does before a 202
        started = time.perf_counter()
        persisted(client, 2000)
        durable.append(time.perf_counter() - started)
    lat.sort()
    return {"write_p50_ms": round(statistics.median(lat) * 1000, 3),
            "write_p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1000, 3),
            "waitaof_p50_ms": round(statistics.median(durable) * 1000, 1),
            "waitaof_max_ms": round(max(durable) * 1000, 1)}


def measure(writes: int = 2000, waits: int = 30) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for policy in ("everysec", "always"):
        with tempfile.TemporaryDirectory(prefix="ragmesh-fsync-") as folder:
            proc, url = valkey_proc(Path(folder), "bench", appendfsync=policy)
            proc.start()
            try:
                wait_for_valkey(proc, url)
                client = redis.Redis.from_url(url)
                out[policy] = _measure(client, writes, waits)
                client.close()
            finally:
                proc.stop()
    return out
