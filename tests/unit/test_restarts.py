"""The pure pieces of riding out restarts: when the mesh gives up on a child, what reaches
the children, how long a worker keeps retrying Redis."""

from __future__ import annotations

import pytest

from ragmesh.mesh import crash_looping, settings_env
from shared.queue import retries_for
from shared.settings import Settings

pytestmark = pytest.mark.unit


def test_a_child_killed_now_and_then_is_always_restarted() -> None:
    restarts = [0.0, 100.0, 200.0, 300.0, 400.0, 500.0, 600.0]
    assert not crash_looping(restarts, now=601.0, limit=5, window_s=60)


def test_a_child_that_keeps_dying_is_given_up_on() -> None:
    assert crash_looping([0.0, 5.0, 10.0, 15.0, 20.0], now=21.0, limit=5, window_s=60)
    assert not crash_looping([0.0, 5.0, 10.0, 15.0], now=21.0, limit=5, window_s=60)
    # Old restarts no longer count.
    assert not crash_looping([0.0, 5.0, 70.0, 75.0, 80.0], now=81.0, limit=5, window_s=60)


def test_options_set_on_the_mesh_reach_its_children_as_they_read_them() -> None:
    settings = Settings(api_keys="k1,k2", worker_heartbeat=2, log_json=False,
                        generator_extra_body={"ignore_eos": True}, redis_url="redis://x:1/0")
    env = settings_env(settings)
    assert env == {"RAGMESH_API_KEYS": "k1,k2", "RAGMESH_WORKER_HEARTBEAT": "2",
                   "RAGMESH_LOG_JSON": "false",
                   "RAGMESH_GENERATOR_EXTRA_BODY": '{"ignore_eos": true}',
                   "RAGMESH_REDIS_URL": "redis://x:1/0"}


def test_settings_read_back_from_the_children_environment_are_the_same(monkeypatch) -> None:
    settings = Settings(api_keys="k1,k2", worker_heartbeat=2, log_json=False,
                        generator_extra_body={"ignore_eos": True}, vectorstore_retry_seconds=7)
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    child = Settings()
    for name in settings.model_fields_set:
        assert getattr(child, name) == getattr(settings, name), name


@pytest.mark.parametrize("seconds", [0, 1, 10, 30, 120])
def test_a_worker_retries_redis_for_about_the_seconds_set(seconds: float) -> None:
    # The backoff doubles from 50 ms (the first wait is 0.1 s) up to 1 s a try.
    waits = [min(1.0, 0.05 * 2 ** n) for n in range(1, retries_for(seconds) + 1)]
    assert seconds <= sum(waits) <= seconds + 3
