"""Faults under a steady load of queries and documents, against the real mesh: every request
the API accepted ends (succeeded, or failed with a clear code), none is lost, none shows its
work twice, none is stuck, and the mesh recovers by itself. `python -m bench.chaos` runs
these and the longer cases, with a table of the figures."""

from __future__ import annotations

from typing import Any

import pytest

from bench.chaos import faults, report
from bench.chaos.runner import run_fault

pytestmark = pytest.mark.chaos

CLEAR_CODES = {"failed/worker_lost", "failed/vectorstore_unavailable"}


def _run(chaos_mesh, load, name: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    [fault] = faults.chosen(quick=True, only=name)
    result = run_fault(chaos_mesh, load, fault, faults.QUICK)
    print(report.text_table([result]))
    return result


def _nothing_lost_duplicated_or_stuck(result: dict[str, Any]) -> None:
    assert report.totals(result) == {"lost": 0, "duplicated": 0, "stuck": 0}, result
    for kind in ("queries", "documents"):
        k = result[kind]
        assert k["accepted"] > 0, result  # the load really ran through the fault
        assert set(k["failed"]) <= CLEAR_CODES, result
        assert k["succeeded"] + sum(k["failed"].values()) == k["accepted"], result
        # Whatever was in flight when the fault hit ended within the bound.
        assert k["affected_ended_within_s"] <= report.AFFECTED_BOUND_S, result
    assert result["recovered_s"] is not None, result
    assert result["improper_answers"] == 0, result["outage_answers"]


def test_redis_killed_under_load(chaos_mesh, load):
    result = _run(chaos_mesh, load, "redis_sigkill")
    _nothing_lost_duplicated_or_stuck(result)
    # While Valkey was down the API said so (JSON 503 with Retry-After), and the workers
    # waited it out: the supervisor restarted Valkey alone.
    assert result["outage_answers"].get("503 queue_unavailable", 0) > 0, result
    assert result["restarted"] == {"valkey": 1}, result


def test_milvus_killed_under_load(chaos_mesh, load):
    result = _run(chaos_mesh, load, "milvus_sigkill")
    _nothing_lost_duplicated_or_stuck(result)
    assert result["unindexed_documents"] == []  # every indexed document is still stored
    assert result["restarted"] == {"milvus": 1}, result


def test_every_worker_killed_at_once_under_load(chaos_mesh, load):
    result = _run(chaos_mesh, load, "workers_sigkill")
    _nothing_lost_duplicated_or_stuck(result)
    assert result["restarted"] == {"embedder": 1, "retriever": 1, "generator": 1}, result
