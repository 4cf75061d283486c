"""Which engine runs a generation: wait for a free slot on any engine, within the queue
timeout, and give up as soon as the query ends elsewhere (cancelled, deadline)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from services.generator.engine import OpenAIEngine
from services.generator.slots import EngineSlots, Lease
from services.generator.tokens import EngineTokens


@dataclass
class EngineSlot:
    engine: OpenAIEngine
    slots: EngineSlots
    tokens: EngineTokens


def acquire(pool: Sequence[EngineSlot], deadline: float, still_wanted: Callable[[], bool],
            poll_s: float = 0.05, check_every_s: float = 0.25) -> tuple[EngineSlot, Lease] | None:
    """A held slot on an engine with room, or None when the deadline passes or the query is
    no longer wanted. Engines are tried in random order so replicas spread their load."""
    last_check = 0.0
    while True:
        for choice in random.sample(list(pool), len(pool)):
            lease = Lease(choice.slots)
            lease.in_flight = choice.slots.try_acquire(lease.holder)
            if lease.in_flight:
                return choice, lease
        now = time.time()
        if now >= deadline:
            return None
        if now - last_check >= check_every_s:
            last_check = now
            if not still_wanted():
                return None
        time.sleep(min(poll_s, max(0.0, deadline - now)))
