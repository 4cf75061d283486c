"""Does worker memory stay flat under hostile input?

    python -m bench.worker_memory [--quick] [--model tiny|smollm2] [--out DIR]

Runs the real embedder, retriever and generator code in this process (RQ burst workers over
a real Valkey, Milvus Lite, MiniLM and a vLLM engine), fed through the real API (its own
process) with hostile documents and questions (bench/hostile.py). After a warm-up it measures
this process's resident memory every few requests, each time after `gc.collect()` and glibc's
`malloc_trim(0)` (freed heap handed back, so what remains is what is held), and reports the
growth and whether it levels off. Too noisy for a CI test (allocator and torch high-water
marks move in steps); the figures and goals come back from `run()` like bench.chaos's.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from rq.serializers import JSONSerializer

from bench import hostile
from bench.chaos import engine_model
from bench.chaos.mesh import HANDBOOK, ROOT
from ragmesh.engine import vllm_server_command, vllm_server_env, wait_for_engine
from ragmesh.procs import Proc, free_port, wait_until
from ragmesh.valkey import valkey_proc, wait_for_valkey
from shared.jobs import Queues
from shared.logging import setup_logging
from shared.queue import connect, queue
from shared.settings import Settings
from shared.worker import LaneWorker

KEY = "bench-memory-key"
PLATEAU_MB = 10.0  # growth over the last third of the samples that still counts as flat


def rss_mb() -> float:
    """This process's resident memory after a full collection and malloc_trim(0)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


@contextlib.contextmanager
def stack(state: Path, model: str) -> Iterator[Settings]:
    """Valkey, Milvus Lite, a vLLM engine and the API, each its own process; yields the
    settings the in-process workers use."""
    procs: list[Proc] = []
    try:
        valkey, redis_url = valkey_proc(state / "valkey", "bench")
        procs.append(valkey.start())
        wait_for_valkey(valkey, redis_url)
        milvus_port, engine_port, api_port = free_port(), free_port(), free_port()
        milvus = Proc("milvus", [sys.executable, "-m", "milvus_lite", "server", "--data-dir",
                                 str(state / "milvus.db"), "--host", "127.0.0.1", "--port",
                                 str(milvus_port)], state / "milvus.log").start()
        procs.append(milvus)
        engine = Proc("engine", vllm_server_command(model, host="127.0.0.1", port=engine_port,
                                                    served_model_name="bench"),
                      state / "engine.log", env=vllm_server_env(os.environ)).start()
        procs.append(engine)
        settings = Settings(redis_url=redis_url, vectorstore_uri=f"http://127.0.0.1:"
                            f"{milvus_port}", generator_engine_url=f"http://127.0.0.1:"
                            f"{engine_port}/v1", generator_model="bench", api_keys=KEY,
                            api_port=api_port, api_rate_limit=0, log_level="WARNING",
                            state_dir=state)
        env = {"RAGMESH_REDIS_URL": redis_url, "RAGMESH_API_KEYS": KEY,
               "RAGMESH_API_PORT": str(api_port), "RAGMESH_API_RATE_LIMIT": "0",
               "RAGMESH_LOG_LEVEL": "WARNING", "RAGMESH_STATE_DIR": str(state)}
        api = Proc("api", [sys.executable, "-m", "services.api"], state / "api.log", env=env,
                   cwd=ROOT).start()
        procs.append(api)
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{api_port}/healthz").status_code
                   == 200, 60, "api", [api])
        wait_for_engine(f"http://127.0.0.1:{engine_port}", 600, engine.popen,
                        log_path=engine.log_path)
        yield settings
    finally:
        for proc in reversed(procs):
            proc.stop()


class Workers:
    """The three workers' real task code in this process; `drain()` runs every queued job."""

    def __init__(self, settings: Settings) -> None:
        from services.embedder import core as embedder_core  # noqa: PLC0415 (heavy)
        from services.embedder import tasks as embedder_tasks  # noqa: PLC0415
        from services.generator import tasks as generator_tasks  # noqa: PLC0415
        from services.generator.__main__ import build_pool  # noqa: PLC0415
        from services.retriever import tasks as retriever_tasks  # noqa: PLC0415
        from services.retriever.store import MilvusStore  # noqa: PLC0415

        setup_logging("WARNING", False, service="bench")
        self.conn = connect(settings)
        encoder = embedder_core.load_encoder(settings.embedding_model, "cpu",
                                             max(1, (os.cpu_count() or 2) - 1))
        embedder_tasks.setup(embedder_tasks.Resources(settings, self.conn, encoder))
        retriever_tasks.setup(retriever_tasks.Resources(settings, self.conn,
                                                        MilvusStore(settings.milvus_uri)))
        generator_tasks.setup(generator_tasks.Resources(settings, self.conn,
                                                        build_pool(settings, self.conn)))

    def drain(self) -> None:
        LaneWorker([queue(self.conn, q) for q in Queues], connection=self.conn,
                   serializer=JSONSerializer).work(burst=True, logging_level="WARNING")


def _outcomes(http: httpx.Client, ids: list[str]) -> Counter[str]:
    seen: Counter[str] = Counter()
    for query_id in ids:
        view = http.get(f"/v1/queries/{query_id}").json()
        code = (view.get("error") or {}).get("code")
        seen[f"{view['status']}/{code}" if code else view["status"]] += 1
    return seen


def measure(settings: Settings, warmup: int, total: int, every: int,
            say: Any = print) -> dict[str, Any]:
    workers = Workers(settings)
    http = httpx.Client(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=120,
                        headers={"Authorization": f"Bearer {KEY}"})
    for path in sorted(HANDBOOK.iterdir()):  # real passages for the handbook questions
        http.post("/v1/documents", files={"file": (path.name, path.read_bytes())})
    workers.drain()
    samples, statuses, query_ids = [], Counter(), []
    started = time.monotonic()
    stream = hostile.requests()
    for n in range(1, warmup + total + 1):
        request = next(stream)
        path = "/v1/documents" if request.kind == "document" else "/v1/queries"
        response = http.post(path, json=request.body)
        statuses[f"{request.kind} {response.status_code}"] += 1
        if response.status_code == 202 and request.kind == "query":
            query_ids.append(response.json()["id"])
        if n % every == 0:
            workers.drain()
            if n >= warmup:
                samples.append({"requests": n, "rss_mb": round(rss_mb(), 1),
                                "s": round(time.monotonic() - started, 1)})
                say(f"  after {n:4d} requests: {samples[-1]['rss_mb']:7.1f} MB")
    outcomes = _outcomes(http, query_ids[warmup // 2:])
    http.close()
    return {"samples": samples, "statuses": dict(statuses), "outcomes": dict(outcomes)}


def summarize(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Growth from the end of the warm-up, and over the last third of the samples."""
    rss = [s["rss_mb"] for s in samples]
    third = rss[-max(2, len(rss) // 3):]
    last_third = max(third) - third[0]
    return {"start_mb": rss[0], "end_mb": rss[-1], "peak_mb": max(rss),
            "growth_mb": round(rss[-1] - rss[0], 1),
            "last_third_growth_mb": round(last_third, 1), "plateaus": last_third <= PLATEAU_MB}


def run(out_dir: Path, quick: bool, model: str = "tiny", say: Any = print) -> dict[str, Any]:
    warmup, total, every = (20, 80, 10) if quick else (60, 240, 20)
    with tempfile.TemporaryDirectory(prefix="ragmesh-memory-") as state, \
            stack(Path(state), engine_model(model)) as settings:
        measured = measure(settings, warmup, total, every, say)
    figures = {**measured, **summarize(measured["samples"]), "warmup": warmup,
               "requests": total, "model": model}
    engine_errors = sum(v for k, v in measured["outcomes"].items() if "engine_error" in k)
    goals = [
        {"name": "worker memory levels off (growth over the last third of the run, MB)",
         "value": figures["last_third_growth_mb"], "goal": f"<= {PLATEAU_MB:.0f}",
         "met": figures["plateaus"]},
        {"name": "hostile questions that ended engine_error", "value": engine_errors,
         "goal": "0", "met": engine_errors == 0},
    ]
    rows = "".join(f"| {s['requests']} | {s['rss_mb']} | {s['s']} |\n"
                   for s in measured["samples"])
    markdown = (f"# Worker memory under hostile input\n\n{warmup} requests to warm up, then "
                f"{total}; resident memory of the in-process workers after gc and "
                f"malloc_trim(0).\n\n| requests | RSS MB | s |\n| --- | --- | --- |\n{rows}\n"
                f"Growth after the warm-up: {figures['growth_mb']} MB (peak "
                f"{figures['peak_mb']} MB); over the last third: "
                f"{figures['last_third_growth_mb']} MB: "
                f"{'levels off' if figures['plateaus'] else 'still rising'}.\n\n"
                f"Answers: {json.dumps(measured['statuses'])}; queries ended: "
                f"{json.dumps(measured['outcomes'])}\n")
    result = {"title": "Worker memory under hostile input", "figures": figures,
              "goals": goals, "markdown": markdown}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "worker-memory.json").write_text(json.dumps(result, indent=2))
    (out_dir / "worker-memory.md").write_text(markdown)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 + 80 requests")
    parser.add_argument("--model", choices=["tiny", "smollm2"], default="tiny")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "worker-memory")
    args = parser.parse_args()
    result = run(args.out, args.quick, args.model)
    print(result["markdown"])
    missed = [g for g in result["goals"] if not g["met"]]
    for g in missed:
        print(f"MISSED {g['name']}: {g['value']} (goal {g['goal']})")
    raise SystemExit(1 if missed else 0)


if __name__ == "__main__":
    main()
