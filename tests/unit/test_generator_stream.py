"""services/generator/tasks.py: how a generation's pieces reach the event stream."""

from __future__ import annotations

import pytest

from services.generator import tasks
from services.generator.engine import Generation

pytestmark = pytest.mark.unit


class Records:
    """What _Watch writes, in order (the real QueryRecords talks to Redis)."""

    def __init__(self) -> None:
        self.deltas: list[str] = []
        self.saved: list[str] = []

    def publish_delta(self, query_id: str, text: str) -> None:
        self.deltas.append(text)

    def transition(self, query_id: str, *, answer: str) -> None:
        self.saved.append(answer)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _stream(watch: tasks._Watch, clock: Clock, pieces: list[tuple[float, str]]) -> Generation:
    gen = Generation()
    for at, piece in pieces:
        clock.now = 100.0 + at
        gen.text += piece
        gen.deltas.append(piece)
        watch.on_delta(gen)
    return gen


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(tasks.time, "monotonic", c)
    return c


def test_the_first_piece_goes_out_at_once_and_a_fast_engines_pieces_go_together(clock):
    records = Records()
    watch = tasks._Watch(records, "q", flush_s=0.020)  # type: ignore[arg-type]
    gen = _stream(watch, clock, [(0.0, "Staff"), (0.002, " get"), (0.004, " 25"),
                                 (0.021, " days"), (0.030, " of")])
    assert records.deltas == ["Staff", " get 25 days"]  # " of" is held back…
    watch.flush()
    assert records.deltas == ["Staff", " get 25 days", " of"]  # …until the end flushes it
    assert "".join(records.deltas) == gen.text
    watch.flush()  # nothing pending: no empty write
    assert len(records.deltas) == 3


def test_a_slow_engines_pieces_go_out_one_by_one(clock):
    records = Records()
    watch = tasks._Watch(records, "q", flush_s=0.020)  # type: ignore[arg-type]
    _stream(watch, clock, [(0.05 * i, f"tok{i} ") for i in range(5)])
    assert records.deltas == [f"tok{i} " for i in range(5)]


def test_no_flush_window_writes_every_piece(clock):
    records = Records()
    watch = tasks._Watch(records, "q", flush_s=0.0)  # type: ignore[arg-type]
    _stream(watch, clock, [(0.0, "a"), (0.0, "b"), (0.0, "c")])
    assert records.deltas == ["a", "b", "c"]
    assert watch.published == 3
