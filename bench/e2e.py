"""End to end on the embedded default: `ragmesh up` (Valkey, Milvus Lite, MiniLM, vLLM CPU
serving SmolLM2-135M), the sample handbook ingested, then the labeled questions at
concurrency 1, 4 and 16, as clients send them (bench/load.py).

    python -m bench.e2e [--quick] [--out reports/bench]

Reported: latency p50/p95, time to the first token, queries per second, how the queries
ended, and where the time goes, stage by stage (each query's own timings: time queued before
a stage, and the stage's work); the rest of a client's wait (the API, the event stream) is
"other". Answers are capped at ANSWER_TOKENS tokens to keep the run short.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench import report
from bench.load import Load, drive
from ragmesh.client import Client
from ragmesh.mesh import default_model_dir
from ragmesh.models import is_complete, prepare_smollm2
from ragmesh.procs import wait_until

ROOT = Path(__file__).resolve().parents[1]
ANSWER_TOKENS = 48
LEVELS = (1, 4, 16)
PARTS = ["embed_queued", "embed", "retrieve_queued", "retrieve", "generate_queued", "generate"]


def smollm2() -> Path:
    """SmolLM2 converted once into the project's state folder, as `make models` does."""
    target = default_model_dir(ROOT / ".ragmesh")
    if not is_complete(target):
        prepare_smollm2(target)
    return target


@contextmanager
def embedded_mesh(state: Path) -> Iterator[tuple[str, str]]:
    """`ragmesh up` in a fresh state folder; yields (API URL, API key)."""
    env = {**os.environ, "RAGMESH_STATE_DIR": str(state), "RAGMESH_API_PORT": "0",
           "RAGMESH_ENGINE_PORT": "0", "RAGMESH_ENGINE_MODEL_PATH": str(smollm2()),
           "RAGMESH_GENERATOR_MAX_TOKENS": str(ANSWER_TOKENS), "RAGMESH_LOG_LEVEL": "WARNING"}
    for name in ("RAGMESH_API_KEYS", "RAGMESH_API_KEY", "RAGMESH_API_URL", "RAGMESH_REDIS_URL",
                 "RAGMESH_VECTORSTORE_URI", "RAGMESH_GENERATOR_ENGINE_URL", "RAGMESH_CONFIG"):
        env.pop(name, None)
    state.mkdir(parents=True, exist_ok=True)
    with open(state / "up.log", "wb") as log:
        up = subprocess.Popen([sys.executable, "-m", "ragmesh.cli", "up"], env=env, cwd=ROOT,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        def ready() -> bool:
            return up.poll() is not None or (state / "api_url").exists()

        wait_until(ready, 900, "ragmesh up", [], interval=1)
        if up.poll() is not None:
            raise RuntimeError(f"ragmesh up exited: {(state / 'up.log').read_text()[-3000:]}")
        yield (state / "api_url").read_text().strip(), (state / "api_key").read_text().strip()
    finally:
        up.terminate()
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()


def ingest(url: str, key: str) -> tuple[int, float]:
    """The sample handbook; returns (chunks indexed, seconds)."""
    started = time.perf_counter()
    with Client(url, key) as client:
        ids = [client.upload(path)["id"] for path in sorted((ROOT / "examples/handbook").iterdir())]
        docs = client.wait_documents(ids)
    if any(d["status"] != "indexed" for d in docs):
        raise RuntimeError(f"ingestion failed: {docs}")
    return sum(int(d.get("chunks") or 0) for d in docs), time.perf_counter() - started


def questions() -> list[str]:
    lines = (ROOT / "examples/handbook-eval.jsonl").read_text().splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()]


def run(out_dir: Path, quick: bool = False) -> dict:
    totals = {1: 6, 4: 12, 16: 32} if quick else {1: 16, 4: 32, 16: 64}
    qs = questions()
    loads: dict[int, Load] = {}
    with tempfile.TemporaryDirectory(prefix="ragmesh-e2e-") as tmp, \
            embedded_mesh(Path(tmp)) as (url, key):
        chunks, ingest_s = ingest(url, key)
        drive(url, key, qs, 2, 4)  # warm-up: the engine's first requests are slow
        for c in LEVELS:
            loads[c] = drive(url, key, qs[c:] + qs[:c], c, totals[c])
    return _summarise(loads, chunks, ingest_s, out_dir)


def _breakdown(load: Load) -> dict[str, float]:
    """Median ms of each part of a succeeded query's time; the rest of its wait is "other"."""
    ok = [f["timings_ms"] for f in load.finals if f.get("status") == "succeeded"]
    parts = {p: report.median([t.get(p, 0.0) for t in ok]) for p in PARTS}
    parts["other"] = max(0.0, report.median(load.latencies) * 1000 - sum(parts.values()))
    return parts


def _summarise(loads: dict[int, Load], chunks: int, ingest_s: float, out_dir: Path) -> dict:
    figures: dict[str, float] = {"ingest_chunks": chunks, "ingest_s": ingest_s}
    rows, stacks = [], {}
    for c, load in loads.items():
        parts = _breakdown(load)
        stacks[c] = parts
        f = {"p50_ms": report.pct(load.latencies, 50) * 1000,
             "p95_ms": report.pct(load.latencies, 95) * 1000,
             "ttft_p50_ms": report.pct(load.first_tokens, 50) * 1000,
             "qps": load.qps, "succeeded": load.succeeded, "submitted": len(load.finals),
             **{f"{k}_p50_ms": v for k, v in parts.items()}}
        figures.update({f"c{c}_{k}": v for k, v in f.items()})
        rows.append([c, len(load.finals), json.dumps(load.outcomes()),
                     f"{f['p50_ms']:.0f} / {f['p95_ms']:.0f}", f"{f['ttft_p50_ms']:.0f}",
                     f"{load.qps:.2f}", " / ".join(f"{parts[p]:.0f}" for p in [*PARTS, "other"])])
    lost = sum(1 for load in loads.values() for f in load.finals if f.get("status") == "lost")
    plot = _stack_plot(out_dir / "e2e_stages.png", stacks)
    table = report.table(["concurrency", "queries", "ended", "latency p50/p95 ms",
                          "first token p50 ms", "q/s", "p50 ms: " + " / ".join([*PARTS, "other"])],
                         rows)
    markdown = (f"`ragmesh up` on this machine: SmolLM2-135M-Instruct on vLLM's CPU build, "
                f"answers capped at {ANSWER_TOKENS} tokens, the generator's default cap; the "
                f"sample handbook ({chunks} chunks) ingested in {ingest_s:.1f} s.\n\n{table}\n")
    goals = [report.goal("queries lost (no terminal state)", lost, "0", lost == 0)]
    return {"title": "End to end, embedded default", "figures": figures, "goals": goals,
            "plots": [plot], "markdown": markdown}


def _stack_plot(path: Path, stacks: dict[int, dict[str, float]]) -> str:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7, 4))
    labels = [f"c={c}" for c in stacks]
    bottom = [0.0] * len(stacks)
    for part in [*PARTS, "other"]:
        values = [stacks[c][part] for c in stacks]
        ax.bar(labels, values, bottom=bottom, label=part)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel("ms (median of each part)")
    ax.set_title("Where a query's time goes, end to end")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("reports/bench"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    section = run(args.out, args.quick)
    report.write(args.out, [section], name="e2e")
    print(report.markdown([section]))


if __name__ == "__main__":
    main()
