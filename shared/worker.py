"""The one way ragmesh workers run: RQ SimpleWorkers (no fork after a model is loaded), JSON
serializer, a health heartbeat, structured logs. A process runs one worker, or several
"lanes" (threads) when its jobs wait on I/O, like the generator's on its engine."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

import redis
from redis.client import Pipeline
from rq import Queue, SimpleWorker
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer
from rq.timeouts import TimerDeathPenalty
from rq.utils import now
from rq.worker import WorkerStatus

from shared import metrics
from shared.health import Heartbeat, ReadyCheck, heartbeat_ttl, host_prefix
from shared.jobs import Queues
from shared.logging import get_logger
from shared.queue import connect, queue
from shared.recovery import JobTracker, LeaseKeeper
from shared.settings import Settings

log = get_logger(__name__)


# RQ refreshes the worker's key, writes its state and looks for `rq suspend` around every
# job, each in a round trip of its own: a dozen per job. The key lives worker_ttl + 60 s, so
# once a second is plenty, and a state the key already holds needs no second write.
_REFRESH_S = 1.0


class RagmeshWorker(SimpleWorker):
    """A SimpleWorker whose running job holds a lease, so a reaper can tell when it dies, and
    which starts a job in one round trip to Redis where RQ takes five."""

    tracker: JobTracker | None = None
    _beat_at = _suspension_at = float("-inf")
    _pending: Pipeline | None = None
    # While Redis is down RQ waits longer and longer between tries (up to a minute by
    # default); a Redis restart takes seconds, so try every two at most.
    max_connection_wait_time = 2.0

    def execute_job(self, job: Job, queue: Queue) -> Any:
        try:
            return super().execute_job(job, queue)
        finally:
            if self.tracker is not None:
                self.tracker.forget(job.id)  # its lease went in cleanup_execution's transaction

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        if timeout is None and time.monotonic() - self._beat_at < _REFRESH_S:
            return
        self._beat_at = time.monotonic()
        with self.connection.pipeline() as pipe:  # one round trip, not three
            super().heartbeat(timeout, pipe)
            pipe.execute()

    def reorder_queues(self, reference_queue: Queue) -> None:
        # RQ calls this as a job comes off a queue, and then sends a heartbeat: the job's start
        # carries one anyway, so that would be a round trip on the job's way for nothing.
        super().reorder_queues(reference_queue)
        self._beat_at = time.monotonic()

    def check_for_suspension(self, burst: bool) -> None:
        if time.monotonic() - self._suspension_at >= _REFRESH_S:
            self._suspension_at = time.monotonic()
            super().check_for_suspension(burst)

    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
        if pipeline is None and state == self._state:
            return
        super().set_state(state, pipeline)

    def prepare_execution(self, job: Job) -> Execution:
        """RQ's, with the commands held back for prepare_job_execution's transaction."""
        pipeline = self.connection.pipeline()
        execution = Execution.create(job, self.get_heartbeat_ttl(job), pipeline=pipeline,
                                     worker_name=self.name)
        self.executions[execution.id] = execution
        self.set_state(WorkerStatus.BUSY, pipeline=pipeline)
        if self.tracker is not None:
            self.tracker.begin(job.id, pipeline)
        self._pending = pipeline
        return execution

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """RQ's (rq 3.0 worker/base.py), sent in one transaction with prepare_execution's."""
        pipeline, self._pending = self._pending or self.connection.pipeline(), None
        with pipeline:
            heartbeat_ttl = self.get_heartbeat_ttl(job)
            self.heartbeat(heartbeat_ttl, pipeline=pipeline)
            job.heartbeat(now(), heartbeat_ttl, pipeline=pipeline)
            job.prepare_for_execution(self.name, pipeline=pipeline)
            pipeline.persist(job.key)
            if remove_from_intermediate_queue:
                origin = Queue(job.origin, connection=self.connection)
                pipeline.lrem(origin.intermediate_queue_key, 1, job.id)
            pipeline.execute()
        self._beat_at = time.monotonic()

    def handle_job_success(self, job: Job, queue: Queue,
                           started_job_registry: StartedJobRegistry,
                           execution: Execution) -> None:
        """RQ's, in one round trip where RQ takes three, for the jobs ragmesh enqueues: they
        keep no result (result_ttl 0: the outcome is in the query's or document's record, and
        RQ deletes such a job as it ends) and have no dependents, repeats, group or rate limit,
        so there is nothing to WATCH or look up first. Any other job takes RQ's own path."""
        if (job.get_result_ttl(self.default_result_ttl) != 0 or job.repeats_left
                or job.group_id or job.has_rate_limit):
            super().handle_job_success(job, queue, started_job_registry, execution)
            return
        assert job.started_at and job.ended_at
        with self.connection.pipeline() as pipe:
            self.increment_successful_job_count(pipeline=pipe)
            self.increment_total_working_time(job.ended_at - job.started_at, pipe)
            pipe.delete(job.key, job.dependents_key, job.dependencies_key,
                        Result.get_key(job.id))
            self.cleanup_execution(job, pipeline=pipe, execution=execution)
            pipe.execute()
        job._status = JobStatus.FINISHED

    def cleanup_execution(self, job: Job, pipeline: Pipeline,
                          execution: Execution | None = None) -> None:
        """RQ's, plus the job's lease and the worker's idle state, in the same transaction."""
        super().cleanup_execution(job, pipeline, execution)
        if self.tracker is not None:
            self.tracker.end(job.id, pipeline)
        self.set_state(WorkerStatus.IDLE, pipeline=pipeline)


class LaneWorker(RagmeshWorker):
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


def _worker(cls: type[RagmeshWorker], connection: redis.Redis, queues: Sequence[Queues],
            name: str, tracker: JobTracker) -> RagmeshWorker:
    worker = cls([queue(connection, q) for q in queues], connection=connection, name=name,
                 serializer=JSONSerializer, worker_ttl=20, job_monitoring_interval=5,
                 maintenance_interval=30)
    worker.tracker = tracker
    return worker


def run_worker(settings: Settings, service: str, queues: Sequence[Queues], check: ReadyCheck,
               lanes: int = 1, burst: bool = False) -> None:
    """Serve `queues` until SIGTERM/SIGINT: each lane finishes the job in hand, then exits."""
    connection = connect(settings)
    name = worker_name(settings, service)
    if settings.metrics_port:
        metrics.serve(settings.metrics_port)
    metrics.WORKER_INFO.labels(service, name).set(1)
    tracker = JobTracker(connection, lease_s=heartbeat_ttl(settings.worker_heartbeat))
    heartbeat = Heartbeat(connection, service, name, check, settings.worker_heartbeat)
    heartbeat.beat()
    heartbeat.start()
    keeper = LeaseKeeper(connection, tracker, settings.worker_heartbeat,
                         settings.query_result_ttl, settings.stage_timeout)
    keeper.start()
    log.info("worker_started", worker=name, queues=[q.value for q in queues], lanes=lanes,
             metrics_port=settings.metrics_port or None)
    # RQ's own lines (three per job) only at DEBUG: the generator writes one line per query
    # with everything in it, and RQ's would cost more than the job's own bookkeeping.
    rq_level = "DEBUG" if settings.log_level.upper() == "DEBUG" else "WARNING"
    try:
        if lanes == 1:
            _worker(RagmeshWorker, connection, queues, name, tracker).work(
                burst=burst, logging_level=rq_level)
        else:
            _run_lanes(connection, queues, name, lanes, burst, rq_level, tracker)
    finally:
        keeper.stop()
        heartbeat.stop()
        log.info("worker_stopped", worker=name)


def _run_lanes(connection: redis.Redis, queues: Sequence[Queues], name: str, lanes: int,
               burst: bool, level: str, tracker: JobTracker) -> None:
    workers = [_worker(LaneWorker, connection, queues, f"{name}-lane{i}", tracker)
               for i in range(lanes)]
    threads = [threading.Thread(target=w.work, kwargs={"burst": burst, "logging_level": level},
                                name=w.name, daemon=True) for w in workers]

    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("stopping_lanes", signal=signum)
        stopping.set()
        for w in workers:
            w.stop_after_current_job()  # type: ignore[attr-defined]

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for t in threads:
        t.start()
    idle_since: float | None = None
    while any(t.is_alive() for t in threads):
        time.sleep(0.2)
        if not stopping.is_set() or tracker.busy():
            idle_since = None
            continue
        # Stopping with no job in hand: a lane stuck in RQ's reconnect loop (Redis gone)
        # never looks at its stop flag, and has nothing to finish anyway.
        idle_since = idle_since or time.monotonic()
        if time.monotonic() - idle_since > 3:
            log.info("lanes_idle_at_stop", alive=sum(t.is_alive() for t in threads))
            return
