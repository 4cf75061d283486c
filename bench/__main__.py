"""`make bench` (`python -m bench`): every benchmark, one after the other, into one report:
reports/bench/report.json, report.md and the plots beside them.

    python -m bench [--quick] [--only mesh,embedder] [--out reports/bench]

Each section compares side by side within its own run and reports ratios; absolute times are
for reference (they depend on the machine and on what else it runs).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from pathlib import Path

from bench import report

# name -> module; each has run(out_dir, quick) -> section (see bench/report.py)
SECTIONS = {"mesh": "bench.mesh", "embedder": "bench.embedder", "retrieval": "bench.retrieval",
            "e2e": "bench.e2e"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and queries")
    parser.add_argument("--only", default="", help=f"comma-separated: {', '.join(SECTIONS)}")
    parser.add_argument("--out", type=Path, default=Path("reports/bench"))
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SECTIONS)
    unknown = set(names) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.out.mkdir(parents=True, exist_ok=True)
    sections, failed = [], []
    for name in names:
        print(f"== {name} ==", flush=True)
        started = time.perf_counter()
        try:
            section = importlib.import_module(SECTIONS[name]).run(args.out, args.quick)
        except Exception:  # one broken benchmark must not hide the others' figures
            failed.append(name)
            section = {"title": name, "figures": {}, "goals": [],
                       "markdown": f"**failed**:\n\n```\n{traceback.format_exc()}```\n"}
        section["seconds"] = round(time.perf_counter() - started, 1)
        sections.append(section)
        print(report.markdown([section]), flush=True)
        report.write(args.out, sections)  # keep what is done if a later section hangs
    print(f"report: {args.out / 'report.md'} ({args.out / 'report.json'})")
    missed = [g["name"] for s in sections for g in s.get("goals", []) if not g["met"]]
    if missed:
        print("goals not met: " + "; ".join(missed))
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
