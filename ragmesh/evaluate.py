"""Answer quality, measured: a labeled set in, metrics and reports out.

The dataset is JSON Lines, one question per line:

    {"question": "...", "expected_sources": ["expenses.html"], "answer_contains": ["245"],
     "collection": "handbook"}

`expected_sources` are file names (matched on their last path part, case-insensitively);
empty means the corpus cannot answer and the right answer says so. `answer_contains` are
facts (case-insensitive substrings) a correct answer holds. `collection` is optional. Lines
may carry an `id` and a `review` object (what `export-review` adds for the labeler); both are
ignored here.

Retrieval is judged twice: on sources (hit@1, recall@k, MRR: is the expected file among the
passages, how high) and on facts (`context_facts`: do the passages handed to the generator
hold every expected fact; a passage can come from the right file and miss the figure).

Everything below but `run_cases` is pure: judge one answer, summarise, compare with a
baseline, write the JSON and Markdown reports and the plot.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.generator.trust import evidence, is_abstention

REPORT_FORMAT = 1
RETRIEVAL = ("hit_at_1", "recall_at_k", "mrr", "context_facts")
ANSWERS = ("answer_contains", "fact_recall", "unanswerable_abstained", "answerable_abstained")
# The metrics a baseline can gate on, and whether higher is better. Latency is left out:
# it measures the machine as much as the system.
GATEABLE: dict[str, bool] = {"hit_at_1": True, "recall_at_k": True, "mrr": True,
                             "context_facts": True, "answer_contains": True, "fact_recall": True,
                             "unanswerable_abstained": True, "answerable_abstained": False,
                             "trust_mean": True}
GROUPS = {"retrieval": RETRIEVAL, "answers": ANSWERS, "all": (*RETRIEVAL, *ANSWERS)}
LABELS = {"hit_at_1": "retrieval hit@1", "recall_at_k": "retrieval recall@k",
          "mrr": "retrieval MRR", "context_facts": "passages holding every expected fact",
          "answer_contains": "answers with every expected fact",
          "fact_recall": "expected facts found", "unanswerable_abstained":
          "unanswerable answered as unanswerable", "answerable_abstained":
          "answerable refused (lower is better)", "trust_mean": "mean trust score",
          "low_trust_share": "answers flagged low-trust", "latency_ms_p50": "latency p50 (ms)",
          "latency_ms_p95": "latency p95 (ms)", "errors": "queries that did not succeed"}


class DatasetError(ValueError):
    """The dataset file is not in the expected format."""


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    question: str = Field(min_length=1)
    expected_sources: list[str]
    answer_contains: list[str] = []
    collection: str | None = None
    id: str | None = None
    review: dict[str, Any] | None = None

    @property
    def answerable(self) -> bool:
        return bool(self.expected_sources)


def load_dataset(path: Path) -> list[Case]:
    """Every question of a JSON Lines file; blank lines are skipped, anything else wrong is
    an error that names its line."""
    cases = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            cases.append(Case.model_validate_json(line))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(line)'}: {e['msg']}"
                                 for e in exc.errors(include_url=False))
            raise DatasetError(f"{path}:{number}: {problems}") from exc
    if not cases:
        raise DatasetError(f"{path}: no questions")
    return cases


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- one question -----------------------------------------------------------------------------
def _name(source: str) -> str:
    return source.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower()


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def judge(case: Case, view: Mapping[str, Any]) -> dict[str, Any]:
    """One question's row of the report: what came back and how it scores."""
    citations = view.get("citations") or []
    sources = [c["source"] for c in citations]
    expected = {_name(s) for s in case.expected_sources}
    relevant = [i for i, s in enumerate(sources, start=1) if _name(s) in expected]
    answer = view.get("answer") or ""
    succeeded = view.get("status") == "succeeded"
    abstained = succeeded and is_abstention(answer)
    found = [f for f in case.answer_contains if _norm(f) in _norm(answer)] if succeeded else []
    context = _norm(" ".join(str(c.get("text", "")) for c in citations))
    row: dict[str, Any] = {
        "question": case.question, "collection": case.collection,
        "expected_sources": case.expected_sources, "answer_contains": case.answer_contains,
        "query_id": view.get("id"), "status": view.get("status"), "answer": answer,
        "sources": sources, "scores": [c.get("score") for c in citations],
        "trust_score": view.get("trust_score"), "low_trust": view.get("low_trust"),
        "latency_ms": (view.get("timings_ms") or {}).get("total"),
        "error": (view.get("error") or {}).get("code"), "abstained": abstained}
    if case.answerable:
        row |= {"rank": relevant[0] if relevant else None,
                "recall": len(expected & {_name(s) for s in sources}) / len(expected),
                "facts_found": found,
                "context_facts": all(_norm(f) in context for f in case.answer_contains),
                "correct": succeeded and not abstained and len(found) == len(
                    case.answer_contains)}
    else:
        row |= {"correct": abstained}
    return row


# --- the whole set ----------------------------------------------------------------------------
def _mean(values: Iterable[float]) -> float | None:
    items = list(values)
    return round(sum(items) / len(items), 4) if items else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile, interpolating between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The report's metrics: retrieval over the answerable questions, answers over each kind,
    trust over every scored answer, latency over every finished query."""
    answerable = [r for r in rows if r["expected_sources"]]
    unanswerable = [r for r in rows if not r["expected_sources"]]
    trusted = [r for r in rows if r["trust_score"] is not None]
    latencies = [r["latency_ms"] for r in rows if r["latency_ms"] is not None]
    facts = [len(r["facts_found"]) / len(r["answer_contains"]) for r in answerable
             if r["answer_contains"]]
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    return {
        "questions": len(rows), "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "hit_at_1": _mean(float(r["rank"] == 1) for r in answerable),
        "recall_at_k": _mean(r["recall"] for r in answerable),
        "mrr": _mean(1 / r["rank"] if r["rank"] else 0.0 for r in answerable),
        "context_facts": _mean(float(r["context_facts"]) for r in answerable
                               if r["answer_contains"]),
        "answer_contains": _mean(float(r["correct"]) for r in answerable),
        "fact_recall": _mean(facts),
        "unanswerable_abstained": _mean(float(r["abstained"]) for r in unanswerable),
        "answerable_abstained": _mean(float(r["abstained"]) for r in answerable),
        "trust_mean": _mean(r["trust_score"] for r in trusted),
        "trust_mean_correct": _mean(r["trust_score"] for r in trusted if r["correct"]),
        "trust_mean_incorrect": _mean(r["trust_score"] for r in trusted if not r["correct"]),
        "low_trust_share": _mean(float(bool(r["low_trust"])) for r in trusted),
        "latency_ms_p50": round(p50, 1) if p50 is not None else None,
        "latency_ms_p95": round(p95, 1) if p95 is not None else None,
        "errors": sum(r["status"] != "succeeded" for r in rows),
    }


def metric_names(spec: str) -> list[str]:
    """`retrieval`, `answers`, `all` or a comma-separated list of gateable metric names."""
    names: list[str] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        if part in GROUPS:
            names += GROUPS[part]
        elif part in GATEABLE:
            names.append(part)
        else:
            raise ValueError(f"unknown metric {part!r}: use {', '.join(GROUPS)} or "
                             f"{', '.join(GATEABLE)}")
    return list(dict.fromkeys(names))


def compare(current: Mapping[str, Any], baseline: Mapping[str, Any], names: Sequence[str],
            tolerance: float) -> list[dict[str, Any]]:
    """Each compared metric with its change; `regressed` when it got worse by more than
    `tolerance` (metrics are shares, so the tolerance is in absolute points: 0.02 = 2 %)."""
    rows = []
    for name in names:
        now, before = current.get(name), baseline.get(name)
        if now is None or before is None:
            rows.append({"metric": name, "current": now, "baseline": before, "delta": None,
                         "regressed": before is not None})  # a metric that vanished regressed
            continue
        worse_by = (before - now) if GATEABLE[name] else (now - before)
        rows.append({"metric": name, "current": now, "baseline": before,
                     "delta": round(now - before, 4), "regressed": worse_by > tolerance + 1e-9})
    return rows


def build_report(rows: list[dict[str, Any]], *, dataset: Path, run: Mapping[str, Any],
                 baseline: Mapping[str, Any] | None = None, baseline_path: str | None = None,
                 compared: Sequence[str] = (), tolerance: float = 0.0) -> dict[str, Any]:
    metrics = summarize(rows)
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "dataset": {"path": str(dataset), "sha256": file_digest(dataset),
                    "questions": metrics["questions"]},
        "run": dict(run), "metrics": metrics, "questions": rows, "comparison": None}
    if baseline is not None:
        report["comparison"] = {
            "baseline": baseline_path, "tolerance": tolerance,
            "same_dataset": baseline.get("dataset", {}).get("sha256") == file_digest(dataset),
            "metrics": compare(metrics, baseline["metrics"], compared, tolerance)}
    return report


def regressions(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    comparison = report.get("comparison") or {}
    return [m for m in comparison.get("metrics", []) if m["regressed"]]


# --- running a set against the API ------------------------------------------------------------
def run_cases(ask: Callable[[Case], Mapping[str, Any]], cases: Sequence[Case],
              concurrency: int = 1,
              on_done: Callable[[Case, Mapping[str, Any]], None] | None = None,
              ) -> list[dict[str, Any]]:
    """Ask every question (in order, `concurrency` at a time) and judge the answers. `ask`
    returns the API's query object; an exception becomes a row with status `error`."""

    def one(case: Case) -> dict[str, Any]:
        try:
            view: Mapping[str, Any] = ask(case)
        except Exception as exc:  # one failing question must not lose the others' results
            view = {"status": "error", "error": {"code": type(exc).__name__,
                                                 "message": str(exc)}}
        if on_done is not None:
            on_done(case, view)
        return judge(case, view)

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return list(pool.map(one, cases))


# --- the review export ------------------------------------------------------------------------
def draft_cases(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Answers kept for review as dataset lines to label: `expected_sources` proposes the
    sources the answer rested on (none when it abstained), `answer_contains` is left to the
    labeler, and `review` shows what happened. One line per question and collection, the
    newest."""
    seen: set[tuple[str, str | None]] = set()
    lines = []
    for item in items:
        key = (_norm(item["question"]), item.get("collection"))
        if key in seen:
            continue
        seen.add(key)
        trust = item.get("trust") or {}
        used = [] if trust.get("abstained") else evidence(item.get("citations") or [])
        feedback = item.get("feedback") or {}
        lines.append({
            "question": item["question"],
            "expected_sources": list(dict.fromkeys(c["source"] for c in used)),
            "answer_contains": [],
            "collection": item.get("collection"),
            "review": {"query_id": item["id"], "reasons": item.get("reasons", []),
                       "answer": item.get("answer"), "trust_score": item.get("trust_score"),
                       "rating": feedback.get("rating"), "comment": feedback.get("comment"),
                       "citations": [{k: c.get(k) for k in ("source", "chunk_id", "score",
                                                            "cited")}
                                     for c in item.get("citations") or []],
                       "asked_at": item.get("created_at")}})
    return lines


def write_jsonl(lines: Iterable[Mapping[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines),
                    encoding="utf-8")
