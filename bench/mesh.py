"""What the mesh costs: the same queries through the mesh and through an in-process pipeline
that calls the same embedder, retriever and generator code directly, both with instant
stand-in stages (bench/standins.py), so that only the mesh is measured.

    python -m bench.mesh [--quick] [--out reports/bench]

The mesh here is the real one: Valkey (as `ragmesh up` runs it: password, AOF), the API
(`python -m services.api`) and the three workers (`shared.worker.run_worker` over the real
`tasks` modules), started as separate processes. A client submits with POST /v1/queries and
follows GET /v1/queries/{id}/events to the end, as a user's client does.

Reported: end-to-end latency p50/p95 both ways, the latency the mesh adds per hop (four
hops: client→embedder, embedder→retriever, retriever→generator, generator→client), each
stage's time in the queue as the record shows it, and the throughput ratio at each
concurrency. Mesh and in-process rounds alternate, so both see the same machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

from bench import report
from bench.load import drive
from bench.standins import (
    InstantEncoder,
    InstantEngine,
    InstantStore,
    instant_tokens,
    stage_delays,
)
from ragmesh.procs import Proc, free_port, wait_until
from ragmesh.valkey import valkey_proc, wait_for_valkey
from services.embedder import core as embed_core
from services.generator import core as gen_core
from services.generator.trust import Scale
from services.retriever import core as retrieve_core
from shared.jobs import GenerateJob, QueryParams
from shared.settings import Settings

HOPS = 4
KEY = "bench-key"
QUESTIONS = ["How many days of annual leave do I get?", "What is the hotel cap in London?",
             "How do I reset my password?", "How many office days a week are required?",
             "What is the pension match?", "Where do I report a security incident?"]


@dataclass
class Mesh:
    api_url: str
    procs: list[Proc]
    redis_url: str

    def redis_commands(self) -> int:
        """Commands Valkey has run so far (those inside scripts and transactions included)."""
        client = redis.Redis.from_url(self.redis_url)
        try:
            return sum(int(v["calls"]) for v in client.info("commandstats").values())
        finally:
            client.close()

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time each kind of process has used so far (a measure no other load skews)."""
        ticks = os.sysconf("SC_CLK_TCK")
        out: dict[str, float] = {}
        for proc in self.procs:
            assert proc.popen is not None
            fields = Path(f"/proc/{proc.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
            kind = proc.name.rstrip("0123456789")
            out[kind] = out.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
        return out


def _env(redis_url: str, api_port: int, state: Path) -> dict[str, str]:
    return {"RAGMESH_REDIS_URL": redis_url, "RAGMESH_API_KEYS": KEY,
            "RAGMESH_API_PORT": str(api_port), "RAGMESH_STATE_DIR": str(state),
            # the bench is one key at full speed: no rate limit, room in the queues
            "RAGMESH_API_RATE_LIMIT": "1000000", "RAGMESH_API_RATE_BURST": "1000000",
            "RAGMESH_API_MAX_QUEUE_DEPTH": "100000",
            "RAGMESH_GENERATOR_MAX_CONCURRENCY": "64", "RAGMESH_GENERATOR_LANES": "16",
            "RAGMESH_LOG_LEVEL": "WARNING", "TOKENIZERS_PARALLELISM": "false"}


@contextmanager
def mesh(state: Path, replicas: int = 1, stage_ms: str = "",
         appendfsync: str = "always") -> Iterator[Mesh]:
    """Valkey, the API and `replicas` stand-in workers per stage, as separate processes;
    `stage_ms`: how long the stand-ins take (bench.standins.stage_delays); `appendfsync`:
    Valkey's, `always` as `ragmesh up` runs it."""
    valkey, redis_url = valkey_proc(state / "valkey", "bench-password", appendfsync=appendfsync)
    procs = [valkey.start()]
    try:
        wait_for_valkey(valkey, redis_url)
        port = free_port()
        env = {**_env(redis_url, port, state), "BENCH_STAGE_MS": stage_ms}
        for stage in ("embedder", "retriever", "generator"):
            for i in range(replicas):
                procs.append(Proc(f"{stage}{i}", [sys.executable, "-m", "bench.standins", stage],
                                  state / "logs" / f"{stage}{i}.log", env=env).start())
        api = Proc("api", [sys.executable, "-m", "services.api"], state / "logs" / "api.log",
                   env=env).start()
        procs.append(api)
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return httpx.get(f"{url}/readyz", timeout=2).json().get("status") == "ready"
            except httpx.HTTPError:
                return False

        wait_until(ready, 60, "bench mesh", procs, interval=0.2)
        yield Mesh(url, procs, redis_url)
    finally:
        for proc in reversed(procs):
            proc.stop(grace=5)


class InProcess:
    """The pipeline without the mesh: the stages' own code called one after the other."""

    def __init__(self, settings: Settings, delays: dict[str, float] | None = None) -> None:
        self.s, self.delays = settings, delays or {}
        self.encoder = InstantEncoder(self.delays.get("embed", 0))
        self.store = InstantStore(self.delays.get("retrieve", 0))
        self.engine = InstantEngine(self.delays.get("generate", 0))
        self.tokens = instant_tokens(settings)
        self.scale = Scale(settings.retrieval_score_threshold, settings.trust_full_score,
                           settings.trust_threshold)

    def query(self, question: str) -> float:
        started = time.perf_counter()
        s = self.s
        params = QueryParams(top_k=s.retrieval_top_k, collection=s.vectorstore_collection,
                             max_tokens=s.generator_max_tokens,
                             temperature=s.generator_temperature)
        [vector] = embed_core.embed(self.encoder, [question], s.embedding_batch_size)
        chunks = retrieve_core.retrieve(self.store, params.collection, vector, params.top_k,
                                        s.retrieval_score_threshold)
        job = GenerateJob(query_id="0" * 32, question=question, params=params, chunks=chunks)
        outcome = gen_core.answer(self.engine, job, tokens=self.tokens,
                                  max_context_tokens=s.generator_max_context_tokens,
                                  timeout_s=s.generator_timeout, should_stop=lambda: None,
                                  scale=self.scale)
        if outcome.status.value != "succeeded":
            raise RuntimeError(f"in-process query ended {outcome.status}")
        return time.perf_counter() - started

    def drive(self, concurrency: int, total: int) -> tuple[list[float], float]:
        latencies: list[float] = []
        lock = threading.Lock()
        counter = iter(range(total))

        def client() -> None:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                took = self.query(QUESTIONS[i % len(QUESTIONS)])
                with lock:
                    latencies.append(took)

        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            for f in [pool.submit(client) for _ in range(concurrency)]:
                f.result()
        return latencies, time.perf_counter() - started


SERVICE_TIMES = "embed=5,retrieve=3,generate=150"
LEVELS = (1, 4, 16)


def _compare(m: Mesh, inproc: InProcess, per_level: int, rounds: int,
             levels: tuple[int, ...] = LEVELS) -> dict[int, dict]:
    """Mesh and in-process rounds, alternating, at each concurrency."""
    results: dict[int, dict[str, list]] = {c: {"mesh": [], "mesh_qps": [], "inproc": [],
                                               "inproc_qps": [], "timings": [], "cpu": [],
                                               "commands": []}
                                           for c in levels}
    drive(m.api_url, KEY, QUESTIONS, 4, 40)  # warm-up: imports, connections, scripts
    inproc.drive(4, 40)
    for _ in range(rounds):
        for c in levels:
            n = per_level if c > 1 or not inproc.delays else per_level // 4
            before, commands = m.cpu_seconds(), m.redis_commands()
            run = drive(m.api_url, KEY, QUESTIONS, c, n)
            after = m.cpu_seconds()
            r = results[c]
            r["commands"].append((m.redis_commands() - commands) / n)
            if run.succeeded != n:
                raise RuntimeError(f"queries did not all succeed: {run.outcomes()}")
            r["cpu"].append({k: (after[k] - before[k]) / n * 1000 for k in after})
            r["mesh"] += run.latencies
            r["mesh_qps"].append(run.qps)
            r["timings"] += [f["timings_ms"] for f in run.finals]
            lat, wall = inproc.drive(c, n)
            r["inproc"] += lat
            r["inproc_qps"].append(n / wall)
    return results


def run(out_dir: Path, quick: bool = False, replicas: int | None = None) -> dict:
    per_level = 60 if quick else 300
    rounds = 1 if quick else 2
    replicas = replicas or 2
    settings = Settings(_env_file=None)
    with tempfile.TemporaryDirectory(prefix="ragmesh-bench-") as tmp:
        with mesh(Path(tmp) / "instant", replicas) as m:
            instant = _compare(m, InProcess(settings), per_level, rounds)
        with mesh(Path(tmp) / "timed", replicas, SERVICE_TIMES) as m:
            timed = _compare(m, InProcess(settings, stage_delays(SERVICE_TIMES)),
                             per_level // 3, rounds)
        # What the durable default costs: Valkey fsyncs its AOF before it answers each write.
        with mesh(Path(tmp) / "everysec", replicas, appendfsync="everysec") as m:
            everysec = _compare(m, InProcess(settings), per_level, rounds, levels=(1,))
    return _summarise(instant, timed, everysec, replicas, out_dir)


def _figures(results: dict[int, dict], prefix: str) -> dict[str, float]:
    f: dict[str, float] = {}
    for c, r in results.items():
        p = f"{prefix}c{c}_"
        f[p + "mesh_p50_ms"] = report.pct(r["mesh"], 50) * 1000
        f[p + "mesh_p95_ms"] = report.pct(r["mesh"], 95) * 1000
        f[p + "inproc_p50_ms"] = report.pct(r["inproc"], 50) * 1000
        f[p + "inproc_p95_ms"] = report.pct(r["inproc"], 95) * 1000
        f[p + "hop_p50_ms"] = (f[p + "mesh_p50_ms"] - f[p + "inproc_p50_ms"]) / HOPS
        f[p + "hop_p95_ms"] = (f[p + "mesh_p95_ms"] - f[p + "inproc_p95_ms"]) / HOPS
        f[p + "mesh_qps"] = report.median(r["mesh_qps"])
        f[p + "inproc_qps"] = report.median(r["inproc_qps"])
        f[p + "throughput_ratio"] = f[p + "mesh_qps"] / f[p + "inproc_qps"]
        for stage in ("embed", "retrieve", "generate"):
            f[p + f"{stage}_queue_p50_ms"] = report.pct(
                [t.get(f"{stage}_queued", 0.0) for t in r["timings"]], 50)
        f[p + "redis_commands_per_query"] = report.median(r["commands"])
        for kind in r["cpu"][0]:
            f[p + f"cpu_ms_per_query_{kind}"] = report.median([x[kind] for x in r["cpu"]])
    return f


def _table(f: dict[str, float], prefix: str) -> str:
    rows = []
    for c in LEVELS:
        p = f"{prefix}c{c}_"
        rows.append([c, f"{f[p + 'mesh_p50_ms']:.1f} / {f[p + 'mesh_p95_ms']:.1f}",
                     f"{f[p + 'inproc_p50_ms']:.2f} / {f[p + 'inproc_p95_ms']:.2f}",
                     f"{f[p + 'hop_p50_ms']:.2f} / {f[p + 'hop_p95_ms']:.2f}",
                     " / ".join(f"{f[p + s + '_queue_p50_ms']:.1f}"
                                for s in ("embed", "retrieve", "generate")),
                     f"{f[p + 'mesh_qps']:.1f}", f"{f[p + 'inproc_qps']:.1f}",
                     f"{f[p + 'throughput_ratio']:.3f}"])
    return report.table(["concurrency", "mesh p50/p95 ms", "in-process p50/p95 ms",
                         "added per hop p50/p95 ms", "queue wait p50 ms (embed/retrieve/"
                         "generate)", "mesh q/s", "in-process q/s", "throughput ratio"], rows)


def _cpu_table(f: dict[str, float], prefix: str) -> str:
    kinds = sorted({k.rsplit("cpu_ms_per_query_", 1)[1] for k in f if "cpu_ms_per_query_" in k})
    rows = []
    for c in LEVELS:
        p = f"{prefix}c{c}_cpu_ms_per_query_"
        rows.append([c, *(f"{f[p + k]:.2f}" for k in kinds),
                     f"{sum(f[p + k] for k in kinds):.2f}",
                     f"{f[f'{prefix}c{c}_redis_commands_per_query']:.0f}"])
    return report.table(["concurrency", *kinds, "total", "Redis commands per query"], rows)


def _fsync_note(f: dict[str, float]) -> str:
    """The same instant mesh at concurrency 1 with Valkey's `appendfsync everysec`."""
    return ("With `appendfsync everysec` instead of `always` (the same mesh, concurrency 1): "
            f"mesh p50 {f['everysec_c1_mesh_p50_ms']:.1f} ms against "
            f"{f['c1_mesh_p50_ms']:.1f} ms, added per hop p50 {f['everysec_c1_hop_p50_ms']:.2f} "
            f"ms against {f['c1_hop_p50_ms']:.2f} ms, queue wait p50 "
            + " / ".join(f"{f[f'everysec_c1_{s}_queue_p50_ms']:.1f}"
                         for s in ("embed", "retrieve", "generate"))
            + " ms. `always` is the default because only it makes the 202 durable against a "
            "machine crash: with `everysec` this Valkey answers WAITAOF before any fsync "
            "(docs/faults.md).")


def _summarise(instant: dict[int, dict], timed: dict[int, dict], everysec: dict[int, dict],
               replicas: int, out_dir: Path) -> dict:
    figures = {**_figures(instant, ""), **_figures(timed, "timed_"),
               **_figures(everysec, "everysec_")}
    cpu_total = sum(v for k, v in figures.items() if k.startswith("c16_cpu_ms_per_query_"))
    goals = [
        report.goal("added latency per hop, p50, concurrency 1", figures["c1_hop_p50_ms"],
                    "< 2 ms", figures["c1_hop_p50_ms"] < 2,
                    f"{figures['everysec_c1_hop_p50_ms']:.2f} ms with appendfsync everysec"),
        report.goal("mesh / in-process throughput, concurrency 16, instant stages",
                    figures["c16_throughput_ratio"], ">= 0.80",
                    figures["c16_throughput_ratio"] >= 0.8,
                    f"the mesh spends {cpu_total:.1f} ms of CPU per query across its "
                    f"processes; in-process, an instant query costs "
                    f"{figures['c1_inproc_p50_ms']:.2f} ms"),
        report.goal(f"mesh / in-process throughput, concurrency 16, stages taking "
                    f"{SERVICE_TIMES} ms", figures["timed_c16_throughput_ratio"], ">= 0.80",
                    figures["timed_c16_throughput_ratio"] >= 0.8)]
    plot = report.bar_plot(out_dir / "mesh_latency.png", "Latency p50 (ms), instant stages",
                           [f"c={c}" for c in LEVELS],
                           {"mesh": [figures[f"c{c}_mesh_p50_ms"] for c in LEVELS],
                            "in-process": [figures[f"c{c}_inproc_p50_ms"] for c in LEVELS]})
    markdown = (
        f"{replicas} replica(s) of each worker, the generator with 16 lanes; {HOPS} hops per "
        "query (client→embedder→retriever→generator→client). Mesh and in-process rounds "
        "alternate.\n\n**Instant stand-in stages** (only the mesh is measured):\n\n"
        f"{_table(figures, '')}\n\n{_fsync_note(figures)}\n\n"
        "CPU time per query in each kind of process (ms; a measure that other load on the "
        f"machine hardly moves):\n\n{_cpu_table(figures, '')}"
        f"\n\n**Stages that take time** ({SERVICE_TIMES} ms, sleeping as a GPU or a remote "
        f"engine would; the same in both):\n\n{_table(figures, 'timed_')}\n")
    return {"title": "Mesh overhead", "figures": figures, "goals": goals, "plots": [plot],
            "markdown": markdown}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--replicas", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("reports/bench"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    section = run(args.out, args.quick, args.replicas)
    report.write(args.out, [section], name="mesh")
    print(report.markdown([section]))


if __name__ == "__main__":
    main()
