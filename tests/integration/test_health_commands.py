"""The containers' healthchecks (`python -m services.<name>.health`) against real workers
started as processes, as Compose runs them: healthy while the worker serves, unhealthy once
it is gone or its engine is, and a worker's metrics port after a real job."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from rq.worker import Worker

from ragmesh.procs import free_port, log_tail
from shared import health
from shared.jobs import QueryParams, RetrieveJob, Tasks
from shared.queue import enqueue
from shared.records import QueryRecords
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

# Generous bounds for slow machines; the tests wait for a state, they never time one.
START_S = 180
GONE_S = 60


@dataclass
class Service:
    name: str
    env: dict[str, str]
    popen: subprocess.Popen[bytes]
    log: Path

    def health(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", f"services.{self.name}.health"],
                              env=self.env, cwd=self.env["RAGMESH_STATE_DIR"],
                              capture_output=True, text=True, timeout=60)

    def kill(self) -> None:
        """SIGKILL the worker and what it started (Milvus Lite): no graceful goodbye."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)


def wait_for(check: Callable[[], bool], timeout: float, what: str,
             service: Service | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    tail = log_tail(service.log) if service else ""
    pytest.fail(f"{what}: not within {timeout:.0f} s\n{tail}")


@pytest.fixture
def start(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Start `python -m services.<name>` with the settings a container gets."""
    started: list[Service] = []

    def run(name: str, **settings: str) -> Service:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAGMESH_")}
        env.update({"PYTHONPATH": str(ROOT), "RAGMESH_REDIS_URL": redis_url,
                    "RAGMESH_STATE_DIR": str(tmp_path), "RAGMESH_WORKER_HEARTBEAT": "1",
                    "RAGMESH_LOG_JSON": "true",
                    "RAGMESH_VECTORSTORE_URI": str(tmp_path / "milvus.db"), **settings})
        log = tmp_path / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen([sys.executable, "-m", f"services.{name}"], env=env,
                                     cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        service = Service(name, env, popen, log)
        started.append(service)
        return service

    yield run
    for service in started:
        service.kill()


def healthy(service: Service) -> bool:
    assert service.popen.poll() is None, log_tail(service.log)
    return service.health().returncode == 0


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_retriever_is_healthy_while_it_serves_and_its_metrics_move(start, redis_client):
    port = free_port()
    retriever = start("retriever", RAGMESH_METRICS_PORT=str(port))
    wait_for(lambda: healthy(retriever), START_S, "retriever healthy", retriever)
    result = retriever.health()
    assert result.stdout.startswith("retriever healthy: retriever-")
    assert "vector store reachable" in result.stdout

    # A real job, as the embedder would hand it on: the retriever searches Milvus Lite.
    queries = QueryRecords(redis_client, 3600)
    params = QueryParams(top_k=4, collection="handbook", max_tokens=8, temperature=0)
    query_id = queries.create("owner", "Where is the office?", params, deadline=600)
    vector = [1 / math.sqrt(384)] * 384
    enqueue(redis_client, Tasks.RETRIEVE, RetrieveJob(query_id=query_id, question="Where?",
                                                     params=params, vector=vector),
            job_timeout=60)
    wait_for(lambda: "t_retrieve" in queries.raw(query_id), START_S, "retrieve job done",
             retriever)
    assert healthy(retriever)

    samples = scrape(port)
    assert samples[("ragmesh_jobs_total", (("outcome", "ok"), ("stage", "retrieve")))] == 1
    assert samples[("ragmesh_stage_duration_seconds_count", (("stage", "retrieve"),))] == 1
    assert samples[("ragmesh_stage_queued_seconds_count", (("stage", "retrieve"),))] == 1
    [info] = [labels for (name, labels) in samples if name == "ragmesh_worker_info"]
    assert dict(info)["service"] == "retriever"
    assert dict(info)["worker"].startswith(health.host_prefix("retriever"))


def test_killed_retriever_turns_unhealthy(start):
    retriever = start("retriever")
    wait_for(lambda: healthy(retriever), START_S, "retriever healthy", retriever)
    retriever.kill()
    # Its heartbeat expires within three beats of one second; RQ's own registration would
    # linger for a minute, which is why the heartbeat is what the check trusts first.
    wait_for(lambda: retriever.health().returncode == 1, GONE_S, "retriever unhealthy")
    result = retriever.health()
    assert result.stdout.startswith("retriever unhealthy: no heartbeat")
    assert len(result.stdout.strip().splitlines()) == 1


def test_generator_is_healthy_when_its_engine_serves_the_model(start, vllm_server):
    generator = start("generator", RAGMESH_GENERATOR_ENGINE_URL=vllm_server,
                      RAGMESH_GENERATOR_MODEL="tiny")
    wait_for(lambda: healthy(generator), START_S, "generator healthy", generator)
    assert "engine serves tiny" in generator.health().stdout


def test_generator_without_its_engine_is_unhealthy_and_says_why(start):
    nobody = f"http://127.0.0.1:{free_port()}/v1"
    generator = start("generator", RAGMESH_GENERATOR_ENGINE_URL=nobody)
    wait_for(lambda: "not ready" in generator.health().stdout, START_S,
             "generator reports its engine", generator)
    result = generator.health()
    assert result.returncode == 1
    assert result.stdout.startswith("generator unhealthy: generator-")
    assert "engine unreachable" in result.stdout


def test_unreachable_redis_is_unhealthy(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGMESH_")}
    env.update({"PYTHONPATH": str(ROOT),
                "RAGMESH_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    result = subprocess.run([sys.executable, "-m", "services.embedder.health"], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stdout.startswith("embedder unhealthy: redis unreachable")


def test_only_this_containers_worker_counts(redis_client):
    # Another container's healthy embedder must not make this one healthy.
    other = "embedder-another-container-7"
    health.publish(redis_client, "embedder", other, True, "model loaded", ttl=30)
    redis_client.set(Worker.redis_worker_namespace_prefix + other, "x", ex=30)
    ok, why = health.local_state(redis_client, "embedder", health.host_prefix("embedder"), 15)
    assert not ok and why.startswith("no heartbeat")
    assert health.local_state(redis_client, "embedder", "embedder-another-container-", 15)[0]


def test_heartbeat_without_rq_registration_or_stale_is_unhealthy(redis_client):
    name = health.host_prefix("embedder") + "123"
    health.publish(redis_client, "embedder", name, True, "model loaded", ttl=30)
    ok, why = health.local_state(redis_client, "embedder", health.host_prefix("embedder"), 15)
    assert not ok and why.endswith("not registered with RQ")
    redis_client.set(Worker.redis_worker_namespace_prefix + name, "x", ex=30)
    assert health.local_state(redis_client, "embedder", health.host_prefix("embedder"), 15)[0]
    ok, why = health.local_state(redis_client, "embedder", health.host_prefix("embedder"), 15,
                                 now=time.time() + 60)
    assert not ok and "heartbeat 60 s old" in why


def test_heartbeat_reports_not_ready(redis_client: redis.Redis):
    name = health.host_prefix("generator") + "9"
    health.publish(redis_client, "generator", name, False, "engine unreachable: boom", ttl=30)
    redis_client.set(Worker.redis_worker_namespace_prefix + name, "x", ex=30)
    ok, why = health.local_state(redis_client, "generator", health.host_prefix("generator"), 15)
    assert not ok and why == f"{name}: not ready: engine unreachable: boom"
