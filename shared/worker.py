"""The one way ragmesh workers run: RQ SimpleWorkers (no fork after a model is loaded), JSON
serializer, a health heartbeat, structured logs. A process runs one worker, or several
"lanes" (threads) when its jobs wait on I/O, like the generator's on its engine."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

import redis
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from rq.timeouts import TimerDeathPenalty

from shared import metrics
from shared.health import Heartbeat, ReadyCheck, host_prefix
from shared.jobs import Queues
from shared.logging import get_logger
from shared.queue import connect, queue
from shared.settings import Settings

log = get_logger(__name__)


class LaneWorker(SimpleWorker):
    """A SimpleWorker that runs in a thread: signals are the main thread's, and job timeouts
    use a timer instead of SIGALRM."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        pass

    def stop_after_current_job(self) -> None:
        self._stop_requested = True

    def dequeue_job_and_maintain_ttl(self, timeout: int | None,
                                     max_idle_time: int | None = None) -> Any:
        # RQ leaves its dequeue loop only on a job or on StopRequested raised by a signal
        # handler, which a thread never gets: wait in short rounds and look at the stop flag.
        if timeout is None:  # burst mode: RQ does not block
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        while not self._stop_requested:
            result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time=2)
            if result is not None:
                return result
        return None


def worker_name(settings: Settings, service: str) -> str:
    return settings.worker_name or f"{host_prefix(service)}{os.getpid()}"


def _worker(cls: type[SimpleWorker], connection: redis.Redis, queues: Sequence[Queues],
            name: str) -> SimpleWorker:
    return cls([queue(connection, q) for q in queues], connection=connection, name=name,
               serializer=JSONSerializer, worker_ttl=20, job_monitoring_interval=5,
               maintenance_interval=30)


def run_worker(settings: Settings, service: str, queues: Sequence[Queues], check: ReadyCheck,
               lanes: int = 1, burst: bool = False) -> None:
    """Serve `queues` until SIGTERM/SIGINT: each lane finishes the job in hand, then exits."""
    connection = connect(settings)
    name = worker_name(settings, service)
    if settings.metrics_port:
        metrics.serve(settings.metrics_port)
    metrics.WORKER_INFO.labels(service, name).set(1)
    heartbeat = Heartbeat(connection, service, name, check, settings.worker_heartbeat)
    heartbeat.beat()
    heartbeat.start()
    log.info("worker_started", worker=name, queues=[q.value for q in queues], lanes=lanes,
             metrics_port=settings.metrics_port or None)
    try:
        if lanes == 1:
            _worker(SimpleWorker, connection, queues, name).work(
                burst=burst, logging_level=settings.log_level.upper())
        else:
            _run_lanes(connection, queues, name, lanes, burst, settings.log_level.upper())
    finally:
        heartbeat.stop()
        log.info("worker_stopped", worker=name)


def _run_lanes(connection: redis.Redis, queues: Sequence[Queues], name: str, lanes: int,
               burst: bool, level: str) -> None:
    workers = [_worker(LaneWorker, connection, queues, f"{name}-lane{i}") for i in range(lanes)]
    threads = [threading.Thread(target=w.work, kwargs={"burst": burst, "logging_level": level},
                                name=w.name, daemon=True) for w in workers]

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("stopping_lanes", signal=signum)
        for w in workers:
            w.stop_after_current_job()  # type: ignore[attr-defined]

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
