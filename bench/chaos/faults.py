"""The faults: what each does to the running mesh. Each `inject` returns once the fault has
been applied (a storage server held down for `Timing.down_s`, then left to the supervisor,
which restarts it on the same port over the same data)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.chaos.mesh import ChaosMesh
from shared.jobs import Queues


@dataclass(frozen=True)
class Timing:
    warm_s: float  # steady load before the fault
    down_s: float  # how long a storage server stays down
    after_s: float  # steady load after the mesh recovered
    settle_s: float  # how long accepted work may take to end once the load stops


QUICK = Timing(warm_s=4, down_s=3, after_s=4, settle_s=60)
FULL = Timing(warm_s=10, down_s=8, after_s=15, settle_s=90)


@dataclass(frozen=True)
class Fault:
    name: str
    what: str
    quick: bool  # run by --quick (and in CI through tests/chaos)
    inject: Callable[[ChaosMesh, Timing], None]


def _storage(name: str, sig: signal.Signals, everysec: bool = False) -> Callable[..., None]:
    def inject(mesh: ChaosMesh, timing: Timing) -> None:
        if everysec:  # as a production Redis runs: up to a second of writes not yet on disk
            client = mesh.redis()
            client.config_set("appendfsync", "everysec")
            client.close()
        with mesh.paused():
            mesh.signal(name, sig)
            time.sleep(timing.down_s)

    return inject


def _generating(mesh: ChaosMesh, within_s: float = 15.0) -> bool:
    """Wait (a little) until a generation is running: the job a kill costs the most."""
    client = mesh.redis()
    try:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if client.zcard(f"rq:wip:{Queues.GENERATE.value}"):
                return True
            time.sleep(0.01)
        return False
    finally:
        client.close()


def _workers(*services: str) -> Callable[..., None]:
    def inject(mesh: ChaosMesh, timing: Timing) -> None:
        _generating(mesh)
        names = [n for service in services for n in mesh.workers(service)]
        procs = [mesh.mesh.procs[n].popen for n in names]
        for popen in procs:  # all at once: none of them gets to hand anything on
            if popen is not None:
                popen.send_signal(signal.SIGKILL)
        for popen in procs:
            if popen is not None:
                popen.wait(10)

    return inject


def _nothing(mesh: ChaosMesh, timing: Timing) -> None:
    pass


FAULTS = [
    Fault("none", "no fault: the same load, for reference", False, _nothing),
    Fault("redis_sigkill", "Valkey SIGKILLed under load, down a few seconds, restarted by the "
          "supervisor (AOF, fsync always)", True, _storage("valkey", signal.SIGKILL)),
    Fault("redis_restart", "Valkey stopped cleanly (SIGTERM: SHUTDOWN) under load, restarted",
          False, _storage("valkey", signal.SIGTERM)),
    Fault("redis_sigkill_everysec", "Valkey switched to appendfsync everysec (as production "
          "Redis runs), then SIGKILLed under load", False,
          _storage("valkey", signal.SIGKILL, everysec=True)),
    Fault("milvus_sigkill", "Milvus Lite SIGKILLed under load, down a few seconds, restarted",
          True, _storage("milvus", signal.SIGKILL)),
    Fault("milvus_restart", "Milvus Lite stopped cleanly (SIGTERM) under load, restarted",
          False, _storage("milvus", signal.SIGTERM)),
    Fault("workers_sigkill", "every worker (embedder, retriever, generator and their "
          "replicas) SIGKILLed at once under load, while a generation runs; restarted by the "
          "supervisor", True,
          _workers("embedder", "retriever", "generator")),
]


def chosen(quick: bool, only: str | None = None) -> list[Fault]:
    if only:
        found = [f for f in FAULTS if f.name == only]
        if not found:
            raise SystemExit(f"no fault {only!r}; known: {', '.join(f.name for f in FAULTS)}")
        return found
    return [f for f in FAULTS if f.quick or not quick]
