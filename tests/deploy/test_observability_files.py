"""Prometheus and Grafana as provisioned from deploy/: every replica scraped, every panel
backed by a metric that exists."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import shared.metrics  # noqa: F401 (registers every ragmesh metric)
from tests.deploy.conftest import (
    DASHBOARD,
    DEPLOY,
    WORKERS,
    dashboard_metric_names,
    dashboard_queries,
)

pytestmark = pytest.mark.unit



def scrape_jobs() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


def ragmesh_series_names() -> set[str]:
    """Every series name the ragmesh metrics can produce."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"],
                "gauge": [""]}
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("ragmesh_"):
            names |= {family.name + s for s in suffixes.get(family.type, [""])}
    return names


def test_every_replica_of_every_service_is_scraped_through_dns(services):
    jobs = scrape_jobs()
    for name in ("api", *WORKERS):
        [sd] = jobs[name]["dns_sd_configs"]
        assert sd["names"] == [name] and sd["type"] == "A", name
        assert str(sd["port"]) == services[name]["environment"]["RAGMESH_METRICS_PORT"]
        assert "static_configs" not in jobs[name]
    # The extra-GPU generators answer to `generator` too, so one job scrapes them all.
    assert "generator" in services["generator-gpu1"]["networks"]["default"]["aliases"]


def test_every_engine_and_milvus_are_scraped(services):
    jobs = scrape_jobs()
    [sd] = jobs["vllm"]["dns_sd_configs"]
    engines = [n for n in services if n.startswith("vllm")]
    for name in engines:
        assert sd["names"][0] in services[name]["networks"]["default"]["aliases"], name
    assert sd["port"] == 8000
    assert jobs["milvus"]["static_configs"][0]["targets"] == ["milvus:9091"]
    assert "9091" in services["milvus"]["expose"]


def test_grafana_provisions_the_datasource_and_dashboard_from_deploy(services):
    mounts = dict(v.split(":")[:2] for v in services["grafana"]["volumes"])
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    providers = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/ragmesh.yml").read_text())["providers"]
    assert mounts["./grafana/dashboards"] == providers[0]["options"]["path"]
    [source] = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"]
    assert source["url"] == "http://prometheus:9090"
    panels = json.loads(DASHBOARD.read_text())["panels"]
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == source["uid"], panel["title"]
            assert panel["targets"], panel["title"]


def test_dashboard_shows_what_the_operators_need():
    exprs = " ".join(expr for _, expr in dashboard_queries())
    for wanted in ("rate(ragmesh_queries_total", "histogram_quantile(0.5",
                   "histogram_quantile(0.95", "ragmesh_stage_duration_seconds_bucket",
                   "ragmesh_stage_queued_seconds_bucket", "ragmesh_queue_depth",
                   "ragmesh_generator_inflight", "ragmesh_generator_capacity",
                   "ragmesh_generator_queue_timeouts_total", "vllm:num_requests_running",
                   "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                   "by (job, instance)", "ragmesh_http_requests_total",
                   "ragmesh_rejected_total"):
        assert wanted in exprs, wanted


def test_queue_depth_is_never_summed_over_replicas():
    # Every API replica reports the same queue depths: a plain sum would double them.
    for title, expr in dashboard_queries():
        if "ragmesh_queue_depth" in expr:
            assert "max by (queue) (ragmesh_queue_depth)" in expr, title


def test_every_ragmesh_metric_on_the_dashboard_is_declared():
    used = {m for m in dashboard_metric_names() if m.startswith("ragmesh_")}
    assert used - ragmesh_series_names() == set()


def test_ragmesh_metrics_are_named_with_base_units():
    for family in REGISTRY.collect():
        if not family.name.startswith("ragmesh_"):
            continue
        if family.type == "histogram":
            # Base units (prometheus.io naming): seconds, bytes, a 0-1 ratio, or a count of
            # things named by the things (texts per embedding batch).
            assert family.name.endswith(("_seconds", "_bytes", "_ratio", "_texts")), \
                family.name
        assert not re.search(r"_(ms|milliseconds|minutes|kb|mb)\b", family.name), family.name
