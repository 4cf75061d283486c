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
import asyncio
import json
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

import aiohttp
import httpx

from bench import report
from bench.standins import InstantEncoder, InstantEngine, InstantStore
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
def mesh(state: Path, replicas: int = 1) -> Iterator[Mesh]:
    """Valkey, the API and `replicas` stand-in workers per stage, as separate processes."""
    valkey, redis_url = valkey_proc(state / "valkey", "bench-password")
    procs = [valkey.start()]
    try:
        wait_for_valkey(valkey, redis_url)
        port = free_port()
        env = _env(redis_url, port, state)
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
        yield Mesh(url, procs)
    finally:
        for proc in reversed(procs):
            proc.stop(grace=5)


async def _one(session: aiohttp.ClientSession, url: str, question: str) -> tuple[float, dict]:
    started = time.perf_counter()
    async with session.post(f"{url}/v1/queries", json={"question": question}) as resp:
        if resp.status != 202:
            raise RuntimeError(f"POST /v1/queries: {resp.status} {await resp.text()}")
        query_id = (await resp.json())["id"]
    final: dict = {}
    async with session.get(f"{url}/v1/queries/{query_id}/events") as resp:
        event = ""
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "final":
                final = json.loads(line[5:])
    took = time.perf_counter() - started
    if final.get("status") != "succeeded":
        raise RuntimeError(f"query {query_id} ended {final.get('status')}: {final.get('error')}")
    return took, final


async def _drive(url: str, concurrency: int, total: int) -> tuple[list[float], float, list[dict]]:
    headers = {"Authorization": f"Bearer {KEY}"}
    latencies: list[float] = []
    finals: list[dict] = []
    counter = iter(range(total))
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:

        async def client() -> None:
            for i in counter:
                took, final = await _one(session, url, QUESTIONS[i % len(QUESTIONS)])
                latencies.append(took)
                finals.append(final)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return latencies, wall, finals


class InProcess:
    """The pipeline without the mesh: the stages' own code called one after the other."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.encoder, self.store, self.engine = InstantEncoder(), InstantStore(), InstantEngine()
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
        outcome = gen_core.answer(self.engine, job, max_context_chars=s.generator_max_context_chars,
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


def run(out_dir: Path, quick: bool = False, replicas: int | None = None) -> dict:
    per_level = 60 if quick else 300
    levels = (1, 4, 16)
    rounds = 1 if quick else 2
    replicas = replicas or 2
    inproc = InProcess(Settings(_env_file=None))
    results: dict[int, dict[str, list]] = {c: {"mesh": [], "mesh_wall": [], "inproc": [],
                                               "inproc_wall": [], "queued": [], "cpu": []}
                                           for c in levels}
    with tempfile.TemporaryDirectory(prefix="ragmesh-bench-") as tmp, \
            mesh(Path(tmp), replicas) as m:
        asyncio.run(_drive(m.api_url, 4, 40))  # warm-up: imports, connections, scripts
        inproc.drive(4, 200)
        for _ in range(rounds):
            for c in levels:
                before = m.cpu_seconds()
                lat, wall, finals = asyncio.run(_drive(m.api_url, c, per_level))
                after = m.cpu_seconds()
                results[c]["cpu"].append({k: (after[k] - before[k]) / per_level * 1000
                                          for k in after})
                results[c]["mesh"] += lat
                results[c]["mesh_wall"].append(per_level / wall)
                results[c]["queued"] += [f["timings_ms"] for f in finals]
                lat, wall = inproc.drive(c, per_level)
                results[c]["inproc"] += lat
                results[c]["inproc_wall"].append(per_level / wall)
    return _summarise(results, replicas, out_dir)


def _summarise(results: dict[int, dict[str, list]], replicas: int, out_dir: Path) -> dict:
    figures: dict[str, float] = {}
    rows: list[list[object]] = []
    cpu_rows: list[list[object]] = []
    for c, r in results.items():
        mesh_p50, mesh_p95 = report.pct(r["mesh"], 50) * 1000, report.pct(r["mesh"], 95) * 1000
        in_p50, in_p95 = report.pct(r["inproc"], 50) * 1000, report.pct(r["inproc"], 95) * 1000
        mesh_qps, in_qps = report.median(r["mesh_wall"]), report.median(r["inproc_wall"])
        hop_p50, hop_p95 = (mesh_p50 - in_p50) / HOPS, (mesh_p95 - in_p95) / HOPS
        waits = {stage: report.pct([t.get(f"{stage}_queued", 0.0) for t in r["queued"]], 50)
                 for stage in ("embed", "retrieve", "generate")}
        figures.update({f"c{c}_mesh_p50_ms": mesh_p50, f"c{c}_mesh_p95_ms": mesh_p95,
                        f"c{c}_inproc_p50_ms": in_p50, f"c{c}_inproc_p95_ms": in_p95,
                        f"c{c}_hop_p50_ms": hop_p50, f"c{c}_hop_p95_ms": hop_p95,
                        f"c{c}_mesh_qps": mesh_qps, f"c{c}_inproc_qps": in_qps,
                        f"c{c}_throughput_ratio": mesh_qps / in_qps,
                        **{f"c{c}_{k}_queue_p50_ms": v for k, v in waits.items()}})
        cpu = {k: report.median([x[k] for x in r["cpu"]]) for k in r["cpu"][0]}
        figures.update({f"c{c}_cpu_ms_per_query_{k}": v for k, v in cpu.items()})
        cpu_rows.append([c, *(f"{cpu[k]:.2f}" for k in sorted(cpu)), f"{sum(cpu.values()):.2f}"])
        rows.append([c, f"{mesh_p50:.1f} / {mesh_p95:.1f}", f"{in_p50:.2f} / {in_p95:.2f}",
                     f"{hop_p50:.2f} / {hop_p95:.2f}",
                     " / ".join(f"{waits[s]:.1f}" for s in ("embed", "retrieve", "generate")),
                     f"{mesh_qps:.0f}", f"{in_qps:.0f}", f"{mesh_qps / in_qps:.3f}"])
    table = report.table(["concurrency", "mesh p50/p95 ms", "in-process p50/p95 ms",
                          "added per hop p50/p95 ms", "queue wait p50 ms (embed/retrieve/"
                          "generate)", "mesh q/s", "in-process q/s", "throughput ratio"], rows)
    goals = [report.goal("added latency per hop, p50, concurrency 1", figures["c1_hop_p50_ms"],
                         "< 2 ms", figures["c1_hop_p50_ms"] < 2),
             report.goal("mesh / in-process throughput, concurrency 16",
                         figures["c16_throughput_ratio"], ">= 0.80",
                         figures["c16_throughput_ratio"] >= 0.8)]
    plot = report.bar_plot(out_dir / "mesh_latency.png", "Latency, instant stages (p50, ms)",
                           [f"c={c}" for c in results],
                           {"mesh": [figures[f"c{c}_mesh_p50_ms"] for c in results],
                            "in-process": [figures[f"c{c}_inproc_p50_ms"] for c in results]})
    markdown = (f"Instant stand-in stages; {replicas} replica(s) of each worker, the generator "
                f"with 16 lanes; {HOPS} hops per query. Mesh and in-process rounds "
                f"alternate.\n\n{table}\n\nCPU time per query in each kind of process "
                f"(ms; what the mesh costs whatever else the machine runs):\n\n"
                + report.table(["concurrency", *sorted(results[1]["cpu"][0]), "total"],
                               cpu_rows))
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
