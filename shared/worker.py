"""The one way ragmesh workers run: an RQ SimpleWorker (no fork after the model is loaded),
JSON serializer, a health heartbeat, structured logs."""

from __future__ import annotations

import os
from collections.abc import Sequence

from rq import SimpleWorker
from rq.serializers import JSONSerializer

from shared import metrics
from shared.health import Heartbeat, ReadyCheck, host_prefix
from shared.jobs import Queues
from shared.logging import get_logger
from shared.queue import connect, queue
from shared.settings import Settings

log = get_logger(__name__)


def worker_name(settings: Settings, service: str) -> str:
    return settings.worker_name or f"{host_prefix(service)}{os.getpid()}"


def run_worker(settings: Settings, service: str, queues: Sequence[Queues], check: ReadyCheck,
               burst: bool = False) -> None:
    """Serve `queues` until SIGTERM/SIGINT (RQ finishes the job in hand, then exits)."""
    connection = connect(settings)
    name = worker_name(settings, service)
    worker = SimpleWorker(
        [queue(connection, q) for q in queues],
        connection=connection,
        name=name,
        serializer=JSONSerializer,
        worker_ttl=30,
        job_monitoring_interval=5,
        maintenance_interval=30,
    )
    if settings.metrics_port:
        metrics.serve(settings.metrics_port)
    metrics.WORKER_INFO.labels(service, name).set(1)
    heartbeat = Heartbeat(connection, service, name, check, settings.worker_heartbeat)
    heartbeat.beat()
    heartbeat.start()
    log.info("worker_started", worker=name, queues=[q.value for q in queues],
             metrics_port=settings.metrics_port or None)
    try:
        worker.work(burst=burst, logging_level=settings.log_level.upper(), with_scheduler=False)
    finally:
        heartbeat.stop()
        log.info("worker_stopped", worker=name)
