"""An evaluation report on disk: report.json (everything), report.md (for people and CI
summaries) and report.png (the metrics, trust by correctness, latency)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ragmesh.evaluate import ANSWERS, LABELS, RETRIEVAL, regressions

SHOWN = (*RETRIEVAL, *ANSWERS, "trust_mean", "trust_mean_correct", "trust_mean_incorrect",
         "low_trust_share", "latency_ms_p50", "latency_ms_p95", "errors")
_EXTRA_LABELS = {"trust_mean_correct": "mean trust, correct answers",
                 "trust_mean_incorrect": "mean trust, wrong answers"}


def label(name: str) -> str:
    return LABELS.get(name) or _EXTRA_LABELS.get(name, name)


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) <= 1 else f"{value:.0f}"
    return str(value)


def write(report: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md",
             "plot": out_dir / "report.png"}
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                             encoding="utf-8")
    plot(report, paths["plot"])
    paths["markdown"].write_text(markdown(report, paths["plot"].name), encoding="utf-8")
    return paths


# --- Markdown ---------------------------------------------------------------------------------
def _metrics_table(report: Mapping[str, Any]) -> list[str]:
    metrics = report["metrics"]
    compared = {m["metric"]: m for m in (report.get("comparison") or {}).get("metrics", [])}
    lines = ["| Metric | Value | Baseline | Change | |", "| --- | ---: | ---: | ---: | --- |"]
    for name in SHOWN:
        c = compared.get(name)
        verdict = "" if c is None else ("**regressed**" if c["regressed"] else "ok")
        delta = "" if c is None or c["delta"] is None else f"{c['delta']:+.3f}"
        lines.append(f"| {label(name)} | {fmt(metrics.get(name))} | "
                     f"{fmt(c['baseline']) if c else ''} | {delta} | {verdict} |")
    return lines


def _misses(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    sections = {
        "Retrieval misses (no expected source in first place)": [
            r for r in rows if r["expected_sources"] and r.get("rank") != 1],
        "Passages without every expected fact": [
            r for r in rows if r["expected_sources"] and not r.get("context_facts", True)],
        "Answers without every expected fact": [
            r for r in rows if r["expected_sources"] and not r["correct"]],
        "Unanswerable questions that got an answer": [
            r for r in rows if not r["expected_sources"] and not r["abstained"]],
    }
    out: list[str] = []
    for title, items in sections.items():
        out += [f"### {title} ({len(items)})", ""]
        for r in items:
            expected = ", ".join(r["expected_sources"]) or "(none: unanswerable)"
            got = ", ".join(dict.fromkeys(r["sources"])) or "(nothing)"
            missing = [f for f in r["answer_contains"] if f not in r.get("facts_found", [])]
            out.append(f"- {r['question']}  \n  expected {expected}; got {got}"
                       + (f"; missing {', '.join(missing)}" if missing else "")
                       + f"; trust {fmt(r['trust_score'])}  \n  > "
                       + " ".join((r["answer"] or r["status"] or "").split())[:300])
        out.append("")
    return out


def markdown(report: Mapping[str, Any], plot_name: str) -> str:
    run, metrics, dataset = report["run"], report["metrics"], report["dataset"]
    failed = regressions(report)
    lines = [f"# Evaluation: {Path(dataset['path']).name}", "",
             f"{metrics['questions']} questions ({metrics['answerable']} answerable, "
             f"{metrics['unanswerable']} unanswerable) against {run.get('api_url')}, "
             f"top_k {run.get('top_k') or 'server default'}, {run.get('started_at')}"
             + (f", {run['label']}" if run.get("label") else "") + ".", ""]
    comparison = report.get("comparison")
    if comparison:
        verdict = (f"**{len(failed)} metric(s) dropped by more than {comparison['tolerance']}**"
                   if failed else f"no metric dropped by more than {comparison['tolerance']}")
        lines += [f"Compared with `{comparison['baseline']}`: {verdict}."
                  + ("" if comparison["same_dataset"] else " (The baseline was taken on a "
                     "different version of the dataset.)"), ""]
    lines += _metrics_table(report) + ["", f"![metrics, trust and latency]({plot_name})", ""]
    lines += ["Retrieval metrics count answerable questions; a source is relevant when its "
              "file name is among `expected_sources`. Recall@k is over the passages returned "
              "(top_k, above the score threshold); passages holding every expected fact counts "
              "the questions whose passages contain all of `answer_contains`.", ""]
    return "\n".join(lines + _misses(report["questions"]))


# --- the plot ---------------------------------------------------------------------------------
def plot(report: Mapping[str, Any], path: Path) -> None:
    # The object API with the Agg canvas: no pyplot global state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415 (heavy)
    from matplotlib.figure import Figure  # noqa: PLC0415

    fig = Figure(figsize=(14, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    bars, trust, latency = fig.subplots(1, 3, width_ratios=[1.4, 1, 1])
    _plot_metrics(bars, report)
    _plot_trust(trust, report["questions"])
    _plot_latency(latency, report["questions"], report["metrics"])
    fig.savefig(path, dpi=110)


def _plot_metrics(ax: Any, report: Mapping[str, Any]) -> None:
    names = [*RETRIEVAL, *ANSWERS, "trust_mean"]
    values = [report["metrics"].get(n) or 0.0 for n in names]
    ys = list(range(len(names)))[::-1]
    bars = ax.barh(ys, values, label="this run",
                   color=["#3b75af"] * len(RETRIEVAL) + ["#ef8636"] * (len(names) - len(RETRIEVAL)))
    ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
    compared = {m["metric"]: m for m in (report.get("comparison") or {}).get("metrics", [])}
    base = [(y, compared[n]["baseline"]) for y, n in zip(ys, names, strict=True)
            if n in compared and compared[n]["baseline"] is not None]
    if base:
        ax.scatter([b for _, b in base], [y for y, _ in base], marker="|", s=300,
                   color="black", label="baseline", zorder=3)
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(ys, [label(n) for n in names], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_title("Quality (share of questions)")


def _plot_trust(ax: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    bins = [i / 10 for i in range(11)]
    right = [r["trust_score"] for r in rows if r["trust_score"] is not None and r["correct"]]
    wrong = [r["trust_score"] for r in rows if r["trust_score"] is not None and not r["correct"]]
    ax.hist([right, wrong], bins=bins, stacked=True, color=["#55a868", "#c44e52"],
            label=["correct", "wrong"])
    ax.set_xlabel("trust score")
    ax.set_ylabel("questions")
    ax.set_title("Trust score by correctness")
    ax.legend(fontsize=8)


def _plot_latency(ax: Any, rows: Sequence[Mapping[str, Any]],
                  metrics: Mapping[str, Any]) -> None:
    values = [r["latency_ms"] / 1000 for r in rows if r["latency_ms"] is not None]
    ax.hist(values or [0], bins=20, color="#8172b2")
    for name, style in (("latency_ms_p50", "--"), ("latency_ms_p95", ":")):
        if metrics.get(name) is not None:
            ax.axvline(metrics[name] / 1000, color="black", linestyle=style,
                       label=f"{name[-3:]} {metrics[name] / 1000:.1f} s")
    ax.set_xlabel("seconds, submit to finish")
    ax.set_title("Latency")
    ax.legend(fontsize=8)
