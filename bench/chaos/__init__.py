"""Faults under load against the real embedded mesh: nothing lost, nothing duplicated,
nothing stuck.

    python -m bench.chaos [--quick] [--only NAME] [--model tiny|smollm2] [--out DIR]

Starts the mesh as `ragmesh up` does (Valkey with AOF, Milvus Lite, MiniLM, a vLLM engine
serving the tiny test Llama by default), ingests the sample handbook, then, fault by fault,
sends a steady load of queries and documents, applies the fault, waits for the mesh to
recover and audits every request the API accepted: how it ended (by code), whether any was
lost, duplicated or stuck, and how long recovery took. --quick runs the cases CI runs too
(tests/chaos). Results: a table on stdout, chaos.json and chaos.md in --out (default
reports/chaos); `run(out_dir, quick)` returns them for a report.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.chaos import durability, faults, report
from bench.chaos.load import Load
from bench.chaos.mesh import ROOT, ChaosMesh
from bench.chaos.runner import run_fault
from shared.settings import Settings

QUESTIONS = ROOT / "examples" / "handbook-eval.jsonl"
# Per second: a steady load that the mesh on two cores serves with room to spare, so a
# fault's backlog drains within the audit's settling time.
QUERY_RATE, DOC_RATE = 1.0, 0.25


def questions() -> list[str]:
    lines = [json.loads(x) for x in QUESTIONS.read_text().splitlines() if x.strip()]
    return [x["question"] for x in lines]


def engine_model(name: str) -> str:
    from ragmesh.models import build_tiny_llama, prepare_smollm2  # noqa: PLC0415

    cache = ROOT / ".cache" / "test-models"  # where the tests build them, once
    if name == "smollm2":
        return str(prepare_smollm2(cache / "smollm2-135m-instruct-v1"))
    return str(build_tiny_llama(cache / "tiny-llama-v1"))


def chaos_settings(state_dir: Path, **overrides: Any) -> Settings:
    """The mesh under test: the embedded defaults, with short answers and no per-key rate
    limit (the audit polls every accepted request)."""
    values: dict[str, Any] = {"state_dir": state_dir, "api_port": 0, "engine_port": 0,
                              "log_level": "WARNING", "generator_max_tokens": 16,
                              "api_rate_limit": 0}
    values.update(overrides)
    return Settings(**values)


def run(out_dir: Path, quick: bool, only: str | None = None, model: str = "tiny",
        say: Any = print) -> dict[str, Any]:
    chosen = faults.chosen(quick, only)
    timing = faults.QUICK if quick else faults.FULL
    started = time.time()
    results = []
    with tempfile.TemporaryDirectory(prefix="ragmesh-chaos-") as state:
        mesh = ChaosMesh(chaos_settings(Path(state)), engine_model(model),
                         report=lambda line: say(f"  {line}"))
        mesh.start()
        load = None
        try:
            if not quick:  # two of a kind, to kill both at once
                for service in ("retriever", "generator"):
                    mesh.add_worker(service)
            mesh.wait_ready()
            mesh.ingest_handbook()
            load = Load(mesh.api_url, mesh.api_key, questions(), QUERY_RATE, DOC_RATE)
            for fault in chosen:
                results.append(run_fault(mesh, load, fault, timing, say=say))
                say(report.text_table(results[-1:]))
        finally:
            if load is not None:
                load.close()
            mesh.stop()
            # Every service's log, to look into what the table says.
            shutil.rmtree(out_dir / "logs", ignore_errors=True)
            shutil.copytree(Path(state) / "logs", out_dir / "logs", dirs_exist_ok=True)
    fsync = durability.measure()
    goal_list = report.goals(results)
    fsync_md = "\n## Durability cost (this machine)\n\n" + "".join(
        f"- appendfsync {policy}: write p50 {v['write_p50_ms']} ms, p99 {v['write_p99_ms']} "
        f"ms; WAITAOF before a 202: p50 {v['waitaof_p50_ms']} ms, max {v['waitaof_max_ms']} "
        "ms\n" for policy, v in fsync.items())
    result = {"title": "Faults under load (chaos)",
              "figures": {"faults": results, "durability": fsync, "quick": quick,
                          "model": model, "duration_s": round(time.time() - started, 1)},
              "goals": goal_list,
              "markdown": report.markdown(results, goal_list, fsync_md)}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "chaos.json").write_text(json.dumps(result, indent=2))
    (out_dir / "chaos.md").write_text(result["markdown"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="only the fast cases (CI's)")
    parser.add_argument("--only", metavar="NAME", help="one fault: " + ", ".join(
        f.name for f in faults.FAULTS))
    parser.add_argument("--model", choices=["tiny", "smollm2"], default="tiny")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "chaos",
                        help="where chaos.json, chaos.md and the services' logs go")
    args = parser.parse_args()
    result = run(args.out, args.quick, args.only, args.model)
    print()
    print(report.text_table(result["figures"]["faults"]))
    for r in result["figures"]["faults"]:
        print(f"{r['fault']}: API refusals during the fault: "
              f"{report.codes(r['outage_answers'])}; restarted by the supervisor: "
              f"{report.codes(r['restarted'])}")
    for policy, v in result["figures"]["durability"].items():
        print(f"appendfsync {policy}: {v}")
    missed = [g for g in result["goals"] if not g["met"]]
    for g in missed:
        print(f"MISSED {g['name']}: {g['value']} (goal {g['goal']})")
    print(f"report: {args.out / 'chaos.md'}")
    raise SystemExit(1 if missed else 0)
