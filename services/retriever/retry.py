"""Riding out a vector store restart: an operation that failed for a transient reason (the
server unreachable, a collection not loaded yet after the server came back) is tried again
with backoff, for a bounded time, then given up with `VectorStoreUnavailable`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class VectorStoreUnavailable(Exception):
    """The vector store stayed unreachable for longer than the retriever waits."""


def call(op: Callable[[], T], *, is_transient: Callable[[BaseException], bool],
         give_up_after_s: float, on_retry: Callable[[BaseException], None] = lambda exc: None,
         first_backoff_s: float = 0.2, max_backoff_s: float = 2.0,
         sleep: Callable[[float], None] = time.sleep,
         clock: Callable[[], float] = time.monotonic) -> T:
    """`op()`, tried again after each transient failure until `give_up_after_s` have passed;
    other errors are raised at once."""
    deadline = clock() + give_up_after_s
    backoff = first_backoff_s
    while True:
        try:
            return op()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if clock() + backoff > deadline:
                raise VectorStoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
            on_retry(exc)
        sleep(backoff)
        backoff = min(backoff * 2, max_backoff_s)
