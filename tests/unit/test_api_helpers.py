"""services/api/body.py check_text and services/api/auth.py _match."""

from __future__ import annotations

import pytest

from services.api.auth import _match
from services.api.body import check_text
from services.api.errors import ApiError

pytestmark = pytest.mark.unit


def test_check_text_returns_valid_text_unchanged() -> None:
    assert check_text("question", "  How long?  ", 100) == "  How long?  "


def test_check_text_accepts_exactly_max_chars() -> None:
    assert check_text("question", "x" * 10, 10) == "x" * 10


@pytest.mark.parametrize(("value", "problem"), [
    ("", "must not be blank"),
    (" \n\t ", "must not be blank"),
    ("ok\x00", "must not contain NUL"),
    ("\x00", "must not contain NUL"),
    ("x" * 11, "longer than 10 characters (11)"),
])
def test_check_text_refuses_with_422(value: str, problem: str) -> None:
    with pytest.raises(ApiError) as info:
        check_text("question", value, 10)
    assert (info.value.status, info.value.code) == (422, "invalid_request")
    assert info.value.message.startswith("question: ")
    assert problem in info.value.message


@pytest.mark.parametrize(("presented", "keys", "expected"), [
    ("key-b", ["key-a", "key-b", "key-c"], True),
    ("key-a", ["key-a"], True),
    ("key-d", ["key-a", "key-b"], False),
    ("key-a", [], False),
    ("", ["key-a"], False),
    ("key-a ", ["key-a"], False),
    ("KEY-A", ["key-a"], False),
    ("key", ["key-a"], False),
    ("clé-ü", ["clé-ü"], True),
    ("\udcff\udcfe", ["key-a"], False),  # header bytes that were not UTF-8
])
def test_match(presented: str, keys: list[str], expected: bool) -> None:
    assert _match(presented, keys) is expected
