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
from tests.support.processes import alive

pytestmark = pytest.mark.e2e

RAGMESH = [sys.executable, "-m", "ragmesh.cli"]


def _descendants(pid: int) -> dict[int, str]:
    """pid -> command line of every process below `pid`."""
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    rows = [line.split(None, 2) for line in out.splitlines() if line.strip()]
    found: dict[int, str] = {}
    frontier = {pid}
    while frontier:
        children = {int(r[0]): r[2] if len(r) > 2 else "" for r in rows
                    if int(r[1]) in frontier}
        frontier = set(children) - set(found)
        found.update(children)
    return found


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def test_up_ingest_ask_and_stop_cleanly(tmp_path: Path, tiny_model: Path) -> None:
    state = tmp_path / "state"
    api_port = free_port()
    env = {**os.environ, "RAGMESH_STATE_DIR": str(state), "RAGMESH_API_PORT": str(api_port),
           "RAGMESH_ENGINE_PORT": "0", "RAGMESH_ENGINE_MODEL_PATH": str(tiny_model),
           "RAGMESH_GENERATOR_MAX_TOKENS": "16", "RAGMESH_LOG_JSON": "true",
           # This tree's code, whichever checkout the environment's editable install names.
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
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
        # The cap reaches the generator (with 300-character chunks the passage ending on the
        # "3. Hotels" heading outranks the table under it: docs/evaluation.md).
        assert any("245" in c["text"] for c in view["citations"])

        # One JSON line per finished query: its id, the chunks with their scores, each
        # stage's latency, the tokens used and the outcome.
        gen_log = (state / "logs" / "generator.log").read_text()
        [line] = [json.loads(x) for x in gen_log.splitlines()
                  if '"query_finished"' in x and view["id"] in x]
        assert line["query_id"] == view["id"] and line["outcome"] == "succeeded"
        cited = [(c["document_id"], c["chunk_id"], c["score"]) for c in view["citations"]]
        assert [tuple(c) for c in line["chunks"]][:len(cited)] == cited
        for stage in ("embed", "retrieve", "generate", "embed_queued", "retrieve_queued",
                      "generate_queued", "total"):
            assert line["timings_ms"][stage] >= 0, stage
        assert line["usage"] == view["usage"] and line["usage"]["completion_tokens"] > 0

        # A worker that dies is restarted by the launcher and the mesh is ready again.
        procs = _descendants(up.pid)
        [embedder] = [pid for pid, args in procs.items() if "worker:embedder" in args]
        os.kill(embedder, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            again = [pid for pid, args in _descendants(up.pid).items()
                     if "worker:embedder" in args and pid != embedder]
            if again and _ready(url):
                break
            time.sleep(1)
        else:
            pytest.fail("the killed embedder was not restarted")
        assert "embedder died" in (tmp_path / "up.log").read_text()
        procs = _descendants(up.pid)
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
    commands = " ".join(procs.values())
    # (RQ renames its workers' processes "rq:worker:<name>: …")
    for part in ("valkey", "services.retriever.lite", "vllm.entrypoints", "services.api",
                 "worker:embedder", "worker:retriever", "worker:generator"):
        assert part in commands  # every component ran under `ragmesh up`...
    left = {pid: args for pid, args in procs.items() if alive(pid)}
    assert left == {}, left  # ...and none is left after Ctrl-C
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{api_port}/healthz")
