"""The CLI's client against the real API: it waits out 429 and 503 as Retry-After says, and
a retried POST carries one Idempotency-Key, so it never creates a second job."""

from __future__ import annotations

import pytest

from ragmesh.client import ApiError, Client
from shared.jobs import Queues
from shared.queue import queue
from tests.conftest import KEY_A
from tests.support.api_server import ServerThread

pytestmark = pytest.mark.integration


def test_the_client_waits_out_the_rate_limit(make_settings, redis_client):
    settings = make_settings(api_rate_limit=1, api_rate_burst=1)
    with ServerThread(settings) as url, Client(url, KEY_A) as client:
        first = client.submit("one")
        second = client.submit("two")  # 429 at first, accepted after Retry-After
        assert first != second
        assert client.query(second)["question"] == "two"
    assert queue(redis_client, Queues.EMBED).count == 2


def test_the_client_gives_up_when_the_mesh_stays_overloaded(make_settings, monkeypatch):
    monkeypatch.setattr("ragmesh.client.RETRIES", 1)
    settings = make_settings(api_max_queue_depth=1)
    with ServerThread(settings) as url, Client(url, KEY_A) as client:
        client.submit("fills the queue")
        with pytest.raises(ApiError) as info:
            client.add_text("Refused while the queue is full.", "a.txt")
        assert info.value.status == 429 and "overloaded" in str(info.value)
