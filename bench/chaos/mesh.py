"""The real embedded mesh (`ragmesh.mesh.Mesh`, as `ragmesh up` runs it) with its supervisor
on a thread that a fault can pause, so that a component stays down for as long as the fault
says before the supervisor brings it back."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import redis

from ragmesh.client import Client
from ragmesh.mesh import Mesh
from ragmesh.procs import Proc
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
HANDBOOK = ROOT / "examples" / "handbook"


class ChaosMesh:
    def __init__(self, settings: Settings, engine_model: str | None = None,
                 report: Callable[[str], None] = print) -> None:
        self.mesh = Mesh(settings, report=report, engine_model=engine_model)
        self.report = report
        self.error: BaseException | None = None
        self._stop, self._paused = threading.Event(), threading.Event()
        self._lock = threading.Lock()  # held while the supervisor checks
        self._thread = threading.Thread(target=self._supervise, name="chaos-supervisor",
                                        daemon=True)

    # --- life
    def start(self) -> ChaosMesh:
        self.mesh.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        # Stop the children while the supervisor thread still lives: a child it restarted
        # gets SIGTERM when that thread ends (ragmesh.procs), Valkey first of all.
        with self._lock:
            self._paused.set()
        self.mesh.stop()
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _supervise(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                if self._paused.is_set():
                    continue
                try:
                    self.mesh.check()
                except RuntimeError as exc:  # a child that keeps dying: the run cannot go on
                    self.error = exc
                    self.report(f"supervisor gave up: {exc}")
                    return

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The supervisor restarts nothing inside this block (a component stays down)."""
        with self._lock:
            self._paused.set()
        try:
            yield
        finally:
            self._paused.clear()

    # --- what faults and audits use
    @property
    def api_url(self) -> str:
        return self.mesh.api_url

    @property
    def api_key(self) -> str:
        return self.mesh.api_key

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.mesh.env["RAGMESH_REDIS_URL"], socket_timeout=5)

    @property
    def milvus_uri(self) -> str:
        return self.mesh.env["RAGMESH_VECTORSTORE_URI"]

    def signal(self, name: str, sig: signal.Signals) -> None:
        """Send `sig` to child `name` and wait for it to exit."""
        proc = self.mesh.procs[name]
        assert proc.popen is not None
        proc.popen.send_signal(sig)
        try:
            proc.popen.wait(30)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait(5)

    def add_worker(self, service: str) -> str:
        """Another worker of `service`, supervised like the others; returns its name."""
        n = 2
        while f"{service}-{n}" in self.mesh.procs:
            n += 1
        name = f"{service}-{n}"
        self.mesh.procs[name] = Proc(name, [sys.executable, "-m", f"services.{service}"],
                                     self.mesh.logs / f"{name}.log", env=self.mesh.env,
                                     cwd=ROOT).start()
        return name

    def workers(self, service: str) -> list[str]:
        return [n for n in self.mesh.procs if n == service or n.startswith(f"{service}-")]

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.api_url}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.error is not None:
                raise RuntimeError(f"the mesh's supervisor gave up: {self.error}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the mesh was not ready within {timeout:.0f} s")
            time.sleep(0.5)

    def ingest_handbook(self) -> list[str]:
        """The sample handbook, indexed; returns the document ids."""
        with Client(self.api_url, self.api_key, timeout=60) as client:
            ids = [client.upload(p)["id"] for p in sorted(HANDBOOK.iterdir())]
            docs = client.wait_documents(ids, timeout=300)
        bad = [d for d in docs if d["status"] != "indexed"]
        if bad:
            raise RuntimeError(f"the handbook was not indexed: {bad}")
        return ids
