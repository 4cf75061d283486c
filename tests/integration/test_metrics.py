"""Metrics after real queries through the real stages: the API's /metrics (with a key on its
public port, without one on the metrics port), a worker's metrics port, and the engine's own
metrics that the Grafana dashboard reads."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ragmesh.procs import free_port
from services.api.app import create_app
from shared import metrics
from tests.conftest import KEY_A
from tests.deploy.conftest import dashboard_metric_names

pytestmark = pytest.mark.integration

A = {"Authorization": f"Bearer {KEY_A}"}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in after, f"{name}{labels} not exported"
    return after[key] - before.get(key, 0.0)


@pytest.fixture
def worker_metrics_port() -> Iterator[int]:
    """The in-process workers' metrics, served the way `run_worker` serves them."""
    port = free_port()
    server = metrics.serve(port)
    yield port
    server.shutdown()


def scrape(port: int) -> Samples:
    return parse(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)


async def test_counters_move_after_real_queries(aiohttp_client, workers, worker_metrics_port):
    api_port = free_port()
    settings = workers.settings.model_copy(update={"metrics_port": api_port})
    api = await aiohttp_client(create_app(settings))
    worker_before = await asyncio.to_thread(scrape, worker_metrics_port)
    api_before = await asyncio.to_thread(scrape, api_port)

    resp = await api.post("/v1/documents", headers=A, json={
        "text": "Travel expenses. Hotels in London are capped at 245 pounds per night.",
        "source": "expenses.md"})
    assert resp.status == 202
    await asyncio.to_thread(workers.drain)
    for _ in range(2):
        resp = await api.post("/v1/queries", headers=A,
                              json={"question": "What is the hotel cap in London?"})
        assert resp.status == 202
        await asyncio.to_thread(workers.drain)
        view = await (await api.get(resp.headers["Location"], headers=A)).json()
        assert view["status"] == "succeeded", view

    # The workers' metrics port.
    after = await asyncio.to_thread(scrape, worker_metrics_port)
    for stage, outcome in (("embed", "ok"), ("retrieve", "ok"), ("generate", "succeeded")):
        assert moved(worker_before, after, "ragmesh_jobs_total", stage=stage,
                     outcome=outcome) == 2
        assert moved(worker_before, after, "ragmesh_stage_duration_seconds_count",
                     stage=stage) == 2
        assert moved(worker_before, after, "ragmesh_stage_queued_seconds_count",
                     stage=stage) == 2
    assert moved(worker_before, after, "ragmesh_generated_tokens_total") > 0
    assert moved(worker_before, after, "ragmesh_prompt_tokens_total") > 0
    assert moved(worker_before, after, "ragmesh_time_to_first_token_seconds_count") == 2
    assert moved(worker_before, after, "ragmesh_queries_total", outcome="succeeded") == 2
    assert moved(worker_before, after, "ragmesh_jobs_total", stage="index_document",
                 outcome="ok") == 1

    # The API's metrics port (no key) and its public /metrics (a key).
    api_after = await asyncio.to_thread(scrape, api_port)
    assert moved(api_before, api_after, "ragmesh_http_requests_total", method="POST",
                 route="/v1/queries", status="202") == 2
    assert moved(api_before, api_after, "ragmesh_http_requests_total", method="POST",
                 route="/v1/documents", status="202") == 1
    assert api_after[("ragmesh_queue_depth", (("queue", "ragmesh-generate"),))] == 0
    public = await api.get("/metrics", headers=A)
    assert public.status == 200
    assert ("ragmesh_queue_depth", (("queue", "ragmesh-embed"),)) in parse(await public.text())
    assert (await api.get("/metrics")).status == 401


def test_engine_exports_what_the_dashboard_reads(vllm_server):
    root = vllm_server.removesuffix("/v1")
    exported = {f.name for f in text_string_to_metric_families(
        httpx.get(f"{root}/metrics", timeout=10).text)}
    wanted = {m for m in dashboard_metric_names() if m.startswith("vllm:")}
    assert wanted and wanted <= exported, wanted - exported
