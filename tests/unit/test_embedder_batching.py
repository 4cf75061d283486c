"""services/embedder/batching.py: which texts share an encode call, and who gets which rows,
with a fake encoder whose calls the test holds and releases."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from services.embedder.batching import BatchingEncoder, Request, take_batch
from services.embedder.core import embed

pytestmark = pytest.mark.unit


def row(text: str) -> list[float]:
    """What the fake model makes of a text: enough to tell texts apart."""
    return [float(len(text)), float(sum(map(ord, text)))]


class FakeEncoder:
    """Records each call; `hold()` makes the next call wait until `release()`."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.options: list[dict[str, Any]] = []
        self.entered = threading.Semaphore(0)
        self._gate: threading.Event | None = None  # for the next call
        self._held: threading.Event | None = None  # the call now held

    def hold(self) -> None:
        self._gate = self._held = threading.Event()

    def release(self) -> None:
        assert self._held is not None
        self._held.set()

    def encode(self, sentences: list[str], **options: Any) -> np.ndarray:
        self.calls.append(list(sentences))
        self.options.append(options)
        gate, self._gate = self._gate, None
        self.entered.release()
        if gate is not None:
            assert gate.wait(10)
        if "bad" in sentences:
            raise ValueError("cannot encode 'bad'")
        return np.array([row(s) for s in sentences], dtype=np.float32).reshape(-1, 2)


@pytest.fixture
def fake() -> FakeEncoder:
    return FakeEncoder()


@pytest.fixture
def make(fake: FakeEncoder) -> Iterator[Callable[..., BatchingEncoder]]:
    made: list[BatchingEncoder] = []
    sizes: list[int] = []

    def build(max_batch: int = 32, max_chars: int = 10_000) -> BatchingEncoder:
        b = BatchingEncoder(fake, max_batch=max_batch, max_chars=max_chars,
                            on_batch=sizes.append)
        made.append(b)
        return b

    yield build
    for b in made:
        b.close()


def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def occupy(fake: FakeEncoder, batcher: BatchingEncoder, pool: ThreadPoolExecutor) -> Future:
    """A first call that holds the model, so that what comes next has to wait."""
    fake.hold()
    first = pool.submit(batcher.encode, ["first"])
    assert fake.entered.acquire(timeout=10)
    return first


def submit_all(pool: ThreadPoolExecutor, batcher: BatchingEncoder,
               requests: list[list[str]], **options: Any) -> list[Future]:
    """Submit in this order, each once the previous one waits."""
    futures = []
    for texts in requests:
        before = batcher.waiting()
        futures.append(pool.submit(batcher.encode, texts, **options))
        until(lambda b=before: batcher.waiting() > b, "request queued")
    return futures


# --- take_batch: the pure rule --------------------------------------------------------------

def requests(*sizes: int, chars: int = 5) -> deque[Request]:
    return deque(Request([f"{i:0{chars}d}" for i in range(n)], ()) for n in sizes)


def shape(pieces: list) -> list[tuple[int, int]]:
    return [(p.start, p.stop) for p in pieces]


def test_whole_requests_in_arrival_order_up_to_the_batch_size():
    waiting = requests(1, 2, 1, 3)
    first = list(waiting)
    pieces = take_batch(waiting, max_batch=4, max_chars=1000)
    assert [p.request for p in pieces] == first[:3]
    assert shape(pieces) == [(0, 1), (0, 2), (0, 1)]
    assert list(waiting) == [first[3]]  # it did not fit whole: left for the next call


def test_a_large_request_goes_in_pieces_and_leaves_the_queue_meanwhile():
    waiting = requests(10, 1)
    doc, question = list(waiting)
    pieces = take_batch(waiting, max_batch=4, max_chars=1000)
    assert shape(pieces) == [(0, 4)] and pieces[0].request is doc
    assert list(waiting) == [question]  # the caller puts the document's rest back behind it


def test_a_large_request_fills_what_is_left_of_a_batch():
    waiting = requests(1, 10)
    pieces = take_batch(waiting, max_batch=4, max_chars=1000)
    assert shape(pieces) == [(0, 1), (0, 3)]
    assert list(waiting) == []


def test_the_character_budget_bounds_a_batch_but_a_long_text_still_goes_alone():
    waiting = requests(1, 1, 1, chars=10)
    assert shape(take_batch(waiting, max_batch=32, max_chars=25)) == [(0, 1), (0, 1)]
    assert len(waiting) == 1
    waiting = requests(2, chars=100)
    assert shape(take_batch(waiting, max_batch=32, max_chars=25)) == [(0, 1)]


def test_requests_with_other_encode_options_wait_for_a_call_of_their_own():
    a, b, c = Request(["a"], (("x", 1),)), Request(["b"], (("x", 2),)), Request(["c"], (("x", 1),))
    waiting = deque([a, b, c])
    assert [p.request for p in take_batch(waiting, 32, 1000)] == [a, c]
    assert list(waiting) == [b]


def test_requests_their_callers_cancelled_are_dropped():
    waiting = requests(1, 1)
    gone, kept = list(waiting)
    gone.future.cancel()
    assert [p.request for p in take_batch(waiting, 32, 1000)] == [kept]
    assert kept.future.running()


# --- BatchingEncoder: threads, rows and errors ------------------------------------------------

def test_a_request_alone_is_encoded_at_once_by_itself(fake, make):
    batcher = make()
    out = batcher.encode(["only one"], batch_size=32)
    assert out.tolist() == [row("only one")]
    assert fake.calls == [["only one"]]
    assert fake.options == [{"batch_size": 32}]


def test_callers_that_wait_together_share_one_call_and_each_gets_its_rows(fake, make):
    batcher = make()
    texts = [[f"question {i}" * (i + 1)] for i in range(8)] + [["two", "texts"]]
    with ThreadPoolExecutor(16) as pool:
        first = occupy(fake, batcher, pool)
        futures = submit_all(pool, batcher, texts)
        fake.release()
        assert first.result(10).tolist() == [row("first")]
        for sent, future in zip(texts, futures, strict=True):
            assert future.result(10).tolist() == [row(t) for t in sent]
    assert fake.calls[1] == [t for sent in texts for t in sent]  # one call, arrival order
    assert len(fake.calls) == 2


def test_a_full_batch_leaves_the_rest_for_the_next_call(fake, make):
    batcher = make(max_batch=3)
    with ThreadPoolExecutor(8) as pool:
        occupy(fake, batcher, pool)
        futures = submit_all(pool, batcher, [[f"q{i}"] for i in range(5)])
        fake.release()
        assert [f.result(10).tolist() for f in futures] == [[row(f"q{i}")] for i in range(5)]
    assert fake.calls[1:] == [["q0", "q1", "q2"], ["q3", "q4"]]


def test_a_question_goes_ahead_of_the_rest_of_a_large_document(fake, make):
    batcher = make(max_batch=4)
    doc = [f"chunk {i}" for i in range(10)]
    with ThreadPoolExecutor(4) as pool:
        fake.hold()
        document = pool.submit(batcher.encode, doc)
        assert fake.entered.acquire(timeout=10)  # its first piece is being encoded
        [question] = submit_all(pool, batcher, [["a question"]])
        fake.release()
        assert question.result(10).tolist() == [row("a question")]
        assert document.result(10).tolist() == [row(t) for t in doc]
    assert fake.calls == [doc[:4], ["a question", *doc[4:7]], doc[7:]]


def test_an_encoding_error_goes_to_the_caller_whose_text_caused_it(fake, make):
    batcher = make()
    with ThreadPoolExecutor(8) as pool:
        occupy(fake, batcher, pool)
        good, bad, other = submit_all(pool, batcher, [["fine"], ["bad"], ["also fine"]])
        fake.release()
        assert good.result(10).tolist() == [row("fine")]
        assert other.result(10).tolist() == [row("also fine")]
        with pytest.raises(ValueError, match="cannot encode"):
            bad.result(10)
    # The shared call failed, then each request went alone.
    assert fake.calls[1:] == [["fine", "bad", "also fine"], ["fine"], ["bad"], ["also fine"]]


def test_a_failing_request_alone_gets_its_error_and_the_model_thread_goes_on(fake, make):
    batcher = make()
    with pytest.raises(ValueError):
        batcher.encode(["bad"])
    assert batcher.encode(["next"]).tolist() == [row("next")]


def test_no_texts_need_no_batch(fake, make):
    batcher = make()
    assert len(batcher.encode([])) == 0
    assert fake.calls == [[]]


def test_closing_fails_the_callers_still_waiting(fake, make):
    batcher = make()
    with ThreadPoolExecutor(4) as pool:
        first = occupy(fake, batcher, pool)
        [waiting] = submit_all(pool, batcher, [["late"]])
        closer = pool.submit(batcher.close)
        until(lambda: batcher.closed, "closing")
        fake.release()
        closer.result(10)
        assert first.result(10).tolist() == [row("first")]
        with pytest.raises(RuntimeError, match="closed"):
            waiting.result(10)
    with pytest.raises(RuntimeError, match="closed"):
        batcher.encode(["after"])


def test_batch_sizes_are_reported(fake):
    sizes: list[int] = []
    batcher = BatchingEncoder(fake, max_batch=4, max_chars=1000, on_batch=sizes.append)
    try:
        batcher.encode([f"t{i}" for i in range(6)])
    finally:
        batcher.close()
    assert sizes == [4, 2]


def test_embed_returns_plain_float_lists_through_the_batcher(fake, make):
    vectors = embed(make(), ["a", "bc"], batch_size=32)
    assert vectors == [row("a"), row("bc")]
    assert all(type(x) is float for v in vectors for x in v)
