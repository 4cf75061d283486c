"""The configuration reference is generated from the settings and must not drift."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.settings import options_markdown

pytestmark = pytest.mark.unit


def test_configuration_doc_lists_every_option_as_generated() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    assert options_markdown() in doc
