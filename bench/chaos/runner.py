"""One fault, start to end: steady load, the fault, recovery, then the audit."""

from __future__ import annotations

import threading
import time
from typing import Any

from bench.chaos import audit, report
from bench.chaos.faults import Fault, Timing
from bench.chaos.load import Load
from bench.chaos.mesh import ChaosMesh
from ragmesh.client import ApiError, Client
from shared.records import owner_of

# Retrieval must still find this: the handbook stayed indexed through the fault.
PROBE = ("What is the nightly hotel limit for a business trip to London?", "expenses.html")
RECOVERY_BOUND_S = 180.0


def recovered_after(mesh: ChaosMesh, since: float, bound_s: float = RECOVERY_BOUND_S
                    ) -> float | None:
    """Seconds from `since` until the mesh is ready and a new query through it succeeds with
    the handbook passage it needs; None if not within `bound_s`."""
    with Client(mesh.api_url, mesh.api_key, timeout=30) as client:
        while time.time() - since < bound_s:
            if mesh.ready():
                try:
                    view = client.ask(PROBE[0], timeout=max(5.0, bound_s - (time.time() - since)),
                                      max_tokens=8)
                except (ApiError, OSError):
                    view = {}
                sources = {c["source"] for c in view.get("citations", [])}
                if view.get("status") == "succeeded" and PROBE[1] in sources:
                    return time.time() - since
            time.sleep(0.5)
    return None


class Watcher:
    """Notes when each accepted submission ends, while the load runs and after."""

    def __init__(self, auditor: audit.Auditor, load: Load) -> None:
        self.auditor, self.load = auditor, load
        self.ended: dict[str, tuple[float, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-watch", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.auditor.watch(self.load.submissions, self.ended)
            self._stop.wait(0.5)

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def settle(self, subs: list[Any], bound_s: float) -> None:
        """Stop watching in the background; keep looking until all ended or `bound_s`."""
        self._stop.set()
        self._thread.join()
        deadline = time.monotonic() + bound_s
        while any(s.id and s.id not in self.ended for s in subs) \
                and time.monotonic() < deadline:
            self.auditor.watch(subs, self.ended)
            time.sleep(0.5)


def run_fault(mesh: ChaosMesh, load: Load, fault: Fault, timing: Timing,
              say: Any = print) -> dict[str, Any]:
    mesh.wait_ready()
    load.take()
    restarts_before = {name: len(times) for name, times in mesh.mesh.restarts.items()}
    auditor = audit.Auditor(mesh.api_url, mesh.api_key)
    try:
        load.start()
        watcher = Watcher(auditor, load).start()
        time.sleep(timing.warm_s)
        say(f"{fault.name}: {fault.what}")
        at = time.time()
        fault.inject(mesh, timing)
        back = time.time()
        recovered = recovered_after(mesh, at)
        say(f"{fault.name}: recovered after "
            f"{'(not recovered)' if recovered is None else round(recovered, 1)} s")
        time.sleep(timing.after_s)
        load.stop()
        subs = load.take()
        watcher.settle(subs, timing.settle_s)
        endings = auditor.endings(subs, watcher.ended)
        rows = audit.stored_chunks(mesh.milvus_uri, ["handbook", load.collection])
        client = mesh.redis()
        try:
            second = audit.second_runs(audit.query_records(client),
                                       {s.tag: s.id for s in subs if s.id})
        finally:
            client.close()
        documents = _all_documents(auditor)
    finally:
        auditor.close()
    owner = owner_of(mesh.api_key)
    restarted = {name: len(times) - restarts_before.get(name, 0)
                 for name, times in mesh.mesh.restarts.items()}
    return report.fault_result(
        fault.name, fault.what, subs, endings, at=at, back=back, recovered_s=recovered,
        repeated_chunks=audit.repeated_chunks(rows), second_runs=second,
        unindexed=audit.unindexed(documents, rows, owner),
        restarted={name: n for name, n in restarted.items() if n})


def _all_documents(auditor: audit.Auditor) -> list[dict[str, Any]]:
    docs, offset = [], 0
    while True:
        body = auditor.http.get("/v1/documents", params={"offset": offset, "limit": 1000}).json()
        docs += body["documents"]
        offset += len(body["documents"])
        if not body["documents"] or offset >= body["total"]:
            return docs
