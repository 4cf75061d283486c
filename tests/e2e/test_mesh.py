"""The whole mesh as a user runs it: `ragmesh up`, `ragmesh ingest`, `ragmesh ask`, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ragmesh.procs import free_port
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e

RAGMESH = [sys.executable, "-m", "ragmesh.cli"]


def _children_of(state_dir: Path) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(state_dir) in line and "pytest" not in line]


def test_up_ingest_ask_and_stop_cleanly(tmp_path: Path, tiny_model: Path) -> None:
    state = tmp_path / "state"
    api_port = free_port()
    env = {**os.environ, "RAGMESH_STATE_DIR": str(state), "RAGMESH_API_PORT": str(api_port),
           "RAGMESH_ENGINE_PORT": "0", "RAGMESH_ENGINE_MODEL_PATH": str(tiny_model),
           "RAGMESH_GENERATOR_MAX_TOKENS": "16", "RAGMESH_LOG_JSON": "true"}
    for name in ("RAGMESH_API_KEYS", "RAGMESH_REDIS_URL", "RAGMESH_VECTORSTORE_URI",
                 "RAGMESH_GENERATOR_ENGINE_URL", "RAGMESH_CONFIG"):
        env.pop(name, None)
    log = (tmp_path / "up.log").open("w")
    up = subprocess.Popen([*RAGMESH, "up"], env=env, cwd=tmp_path, stdout=log,
                          stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 400
        while not (state / "api_url").exists():
            assert up.poll() is None, (tmp_path / "up.log").read_text()
            assert time.monotonic() < deadline, "mesh did not come up"
            time.sleep(1)
        url = (state / "api_url").read_text()
        assert url == f"http://127.0.0.1:{api_port}"
        key = (state / "api_key").read_text().strip()
        assert key in (tmp_path / "up.log").read_text()  # the generated key is printed
        assert httpx.get(f"{url}/readyz").status_code == 200

        ingest = subprocess.run([*RAGMESH, "ingest", str(ROOT / "examples" / "handbook")],
                                env=env, cwd=tmp_path, capture_output=True, text=True,
                                timeout=300)
        assert ingest.returncode == 0, ingest.stdout + ingest.stderr
        assert "indexed 6 of 6" in ingest.stdout

        ask = subprocess.run([*RAGMESH, "ask", "--json",
                              "What is the nightly hotel limit for a business trip to London?"],
                             env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert ask.returncode == 0, ask.stdout + ask.stderr
        view = json.loads(ask.stdout)
        assert view["status"] == "succeeded"
        assert view["citations"][0]["source"] == "expenses.html"
        assert "245" in view["citations"][0]["text"]

        # The per-query log line reaches the generator's log.
        gen_log = (state / "logs" / "generator.log").read_text()
        assert '"event": "query_finished"' in gen_log and view["id"] in gen_log
    finally:
        up.send_signal(signal.SIGINT)
        try:
            code = up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()
            raise
        log.close()
    assert code == 0, (tmp_path / "up.log").read_text()
    assert "stopped." in (tmp_path / "up.log").read_text()
    time.sleep(1)
    assert _children_of(state) == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{api_port}/healthz")
