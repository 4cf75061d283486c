"""services/retriever/retry.py: transient failures are tried again with backoff, for a bound."""

from __future__ import annotations

import pytest

from services.retriever.retry import VectorStoreUnavailable, call

pytestmark = pytest.mark.unit


class Down(Exception):
    pass


class Clock:
    def __init__(self) -> None:
        self.now, self.sleeps = 0.0, []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def flaky(failures: int, exc: Exception):  # type: ignore[no-untyped-def]
    calls = []

    def op() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise exc
        return "hits"

    return op, calls


def test_transient_failures_are_tried_again_until_it_works() -> None:
    clock, retried = Clock(), []
    op, calls = flaky(3, Down("away"))
    result = call(op, is_transient=lambda e: isinstance(e, Down), give_up_after_s=30,
                  on_retry=retried.append, sleep=clock.sleep, clock=lambda: clock.now)
    assert result == "hits" and len(calls) == 4 and len(retried) == 3
    assert clock.sleeps == [0.2, 0.4, 0.8]  # backoff doubles


def test_backoff_is_capped() -> None:
    clock = Clock()
    op, _ = flaky(8, Down("away"))
    call(op, is_transient=lambda e: True, give_up_after_s=60, sleep=clock.sleep,
         clock=lambda: clock.now, max_backoff_s=2.0)
    assert max(clock.sleeps) == 2.0


def test_gives_up_with_vectorstore_unavailable_after_the_bound() -> None:
    clock = Clock()
    op, calls = flaky(1000, Down("still away"))
    with pytest.raises(VectorStoreUnavailable, match="still away"):
        call(op, is_transient=lambda e: True, give_up_after_s=10, sleep=clock.sleep,
             clock=lambda: clock.now)
    assert clock.now <= 10
    assert len(calls) > 3


def test_other_errors_are_raised_at_once() -> None:
    clock = Clock()
    op, calls = flaky(1, ValueError("bad filter"))
    with pytest.raises(ValueError):
        call(op, is_transient=lambda e: isinstance(e, Down), give_up_after_s=30,
             sleep=clock.sleep, clock=lambda: clock.now)
    assert len(calls) == 1 and clock.sleeps == []


def test_milvus_errors_that_say_the_server_is_away_are_transient() -> None:
    from pymilvus.exceptions import MilvusException

    from services.retriever.store import transient

    assert transient(MilvusException(code=2, message="Fail connecting to server"))
    assert transient(MilvusException(code=101, message="collection not loaded"))
    assert transient(ConnectionRefusedError())
    assert not transient(MilvusException(code=1100, message="invalid parameter"))
    assert not transient(ValueError("x"))
