"""What every benchmark shares: percentiles, goals, tables, plots, and the report files
(`report.json`, `report.md`, PNGs) that `make bench` writes.

A section is a dict: {"title", "figures": {name: number}, "goals": [goal(...)],
"plots": [png file names], "markdown": str}."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else 0.0


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def goal(name: str, value: float, target: str, met: bool, note: str = "") -> dict[str, Any]:
    return {"name": name, "value": round(float(value), 4), "goal": target, "met": bool(met),
            "note": note}


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def bar_plot(path: Path, title: str, labels: Sequence[str],
             series: dict[str, Sequence[float]], ylabel: str = "") -> str:
    """Grouped bars, one group per label; returns the file's name."""
    import matplotlib  # noqa: PLC0415 (heavy import)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(1, len(series))
    x = np.arange(len(labels))
    for i, (name, values) in enumerate(series.items()):
        bars = ax.bar(x + i * width - 0.4 + width / 2, values, width, label=name)
        ax.bar_label(bars, fmt="%.3g", fontsize=7)
    ax.set_xticks(x, labels)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def markdown(sections: Sequence[dict[str, Any]]) -> str:
    out = []
    for s in sections:
        out.append(f"## {s['title']}\n\n{s.get('markdown', '')}\n")
        if s.get("goals"):
            rows = [[g["name"], f"{g['value']:.4g}", g["goal"], "met" if g["met"] else "NOT met",
                     g.get("note", "")] for g in s["goals"]]
            out.append(table(["goal", "measured", "target", "", "note"], rows) + "\n")
        out += [f"![{p}]({p})\n" for p in s.get("plots", [])]
    return "\n".join(out)


def machine() -> dict[str, Any]:
    import os  # noqa: PLC0415

    return {"python": platform.python_version(), "cpus": os.cpu_count(),
            "platform": platform.platform(), "when": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def write(out_dir: Path, sections: Sequence[dict[str, Any]], name: str = "report") -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(
        {"machine": machine(), "sections": list(sections)}, indent=2, default=float) + "\n")
    m = machine()
    head = (f"# ragmesh benchmarks\n\n{m['when']}; Python {m['python']}, {m['cpus']} CPUs, "
            f"{m['platform']}. Absolute times are for reference; compare the ratios, measured "
            "side by side in one run.\n\n")
    (out_dir / f"{name}.md").write_text(head + markdown(sections))
