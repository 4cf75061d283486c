"""Figures, goals and tables of a chaos run, from what the load and the audit saw (pure)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from bench.chaos.audit import Ending
from bench.chaos.load import Answer, Submission

# An accepted job in flight when the fault hit must be rerun or failed with a code within
# this (the reaper finds a dead worker's job within a lease; a worker restarts in seconds).
AFFECTED_BOUND_S = 60.0


def _proper_refusal(a: Answer) -> bool:
    """What the API may answer while part of the mesh is down: a JSON error with
    Retry-After (503 unavailable, 429, or 409 while a retried request's first try is open)."""
    return a.status in (409, 429, 503) and a.json and a.retry_after and bool(a.code)


def _kind(kind: str, subs: Sequence[Submission], endings: Sequence[Ending],
          at: float) -> dict[str, Any]:
    mine = [s for s in subs if s.kind == kind]
    ends = [e for e in endings if e.kind == kind]
    done = {"succeeded", "indexed"}
    failed = Counter(f"{e.status}/{e.code}" if e.code else e.status for e in ends
                     if e.status not in done | {"lost", "stuck"})
    in_flight = [s for s in mine if s.id and s.accepted_at and s.accepted_at <= at]
    end_at = {e.id: e.finished_at for e in ends}
    affected = [end_at.get(s.id) for s in in_flight]
    affected = [t for t in affected if t is not None and t > at]
    return {
        "submitted": len(mine),
        "accepted": sum(1 for s in mine if s.id),
        "refused": dict(Counter(s.refused for s in mine if not s.id)),
        "succeeded": sum(1 for e in ends if e.status in done),
        "failed": dict(failed),
        "lost": sum(1 for e in ends if e.status == "lost"),
        "duplicated": sum(1 for e in ends if e.duplicated),
        "stuck": sum(1 for e in ends if e.status == "stuck"),
        "status_regressions": sum(1 for e in ends if e.regressed),
        "affected": len(affected),
        "affected_ended_within_s": round(max(affected) - at, 1) if affected else 0.0,
    }


def fault_result(name: str, what: str, subs: Sequence[Submission], endings: Sequence[Ending],
                 *, at: float, back: float, recovered_s: float | None, repeated_chunks: int,
                 unindexed: Sequence[str], restarted: dict[str, int],
                 second_runs: int = 0) -> dict[str, Any]:
    answers = [a for s in subs for a in s.answers if at <= a.at <= back + 10]
    refusals = [a for a in answers if a.status != 202]
    return {
        "fault": name, "what": what,
        "queries": _kind("query", subs, endings, at),
        "documents": _kind("document", subs, endings, at),
        "repeated_chunks": repeated_chunks,
        "second_runs": second_runs,  # queries that ran twice for one submission
        "unindexed_documents": list(unindexed),
        "recovered_s": None if recovered_s is None else round(recovered_s, 1),
        "outage_answers": dict(Counter(str(a.status) + (f" {a.code}" if a.code else "")
                                       for a in refusals)),
        "improper_answers": sum(1 for a in refusals if not _proper_refusal(a)),
        "duplicated_detail": sorted({e.duplicated for e in endings if e.duplicated}),
        "restarted": restarted,  # children the supervisor restarted during the fault
    }


def totals(result: dict[str, Any]) -> dict[str, int]:
    q, d = result["queries"], result["documents"]
    return {"lost": q["lost"] + d["lost"] + len(result["unindexed_documents"]),
            "duplicated": q["duplicated"] + d["duplicated"] + result["repeated_chunks"]
            + result.get("second_runs", 0),
            "stuck": q["stuck"] + d["stuck"]}


def goals(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in results:
        t = totals(r)
        late = max(r["queries"]["affected_ended_within_s"],
                   r["documents"]["affected_ended_within_s"])
        out += [
            {"name": f"{r['fault']}: lost", "value": t["lost"], "goal": "0",
             "met": t["lost"] == 0},
            {"name": f"{r['fault']}: duplicated", "value": t["duplicated"], "goal": "0",
             "met": t["duplicated"] == 0},
            {"name": f"{r['fault']}: stuck", "value": t["stuck"], "goal": "0",
             "met": t["stuck"] == 0},
            {"name": f"{r['fault']}: jobs in flight ended (s after the fault)", "value": late,
             "goal": f"<= {AFFECTED_BOUND_S:.0f}", "met": late <= AFFECTED_BOUND_S},
            {"name": f"{r['fault']}: recovered (s)", "value": r["recovered_s"],
             "goal": "recovers", "met": r["recovered_s"] is not None},
            {"name": f"{r['fault']}: answers during the outage that were not a JSON 503/429 "
             "with Retry-After", "value": r["improper_answers"], "goal": "0",
             "met": r["improper_answers"] == 0},
        ]
    return out


def codes(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-"


COLUMNS = ("fault", "kind", "submitted", "accepted", "succeeded", "failed (code)",
           "refused (code)", "lost", "dup", "stuck", "in-flight ended s", "recovered s")


def rows(results: Sequence[dict[str, Any]]) -> list[list[str]]:
    out = []
    for r in results:
        for kind in ("queries", "documents"):
            k = r[kind]
            lost = k["lost"] + (len(r["unindexed_documents"]) if kind == "documents" else 0)
            dup = k["duplicated"] + (r["repeated_chunks"] if kind == "documents"
                                     else r.get("second_runs", 0))
            out.append([r["fault"] if kind == "queries" else "", kind, str(k["submitted"]),
                        str(k["accepted"]), str(k["succeeded"]), codes(k["failed"]),
                        codes(k["refused"]), str(lost), str(dup), str(k["stuck"]),
                        str(k["affected_ended_within_s"]),
                        str(r["recovered_s"]) if kind == "queries" else ""])
    return out


def text_table(results: Sequence[dict[str, Any]]) -> str:
    body = [list(COLUMNS), *rows(results)]
    widths = [max(len(row[i]) for row in body) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(results: Sequence[dict[str, Any]], goal_list: Sequence[dict[str, Any]],
             extra: str = "") -> str:
    head = "| " + " | ".join(COLUMNS) + " |\n| " + " | ".join("---" for _ in COLUMNS) + " |\n"
    table = head + "".join("| " + " | ".join(row) + " |\n" for row in rows(results))
    outages = "".join(f"- {r['fault']}: API refusals while it lasted: "
                      f"{codes(r['outage_answers'])}; restarted by the supervisor: "
                      f"{codes(r['restarted'])}\n" for r in results)
    missed = [g for g in goal_list if not g["met"]]
    verdict = "Every goal met." if not missed else "Goals missed: " + "; ".join(
        f"{g['name']} = {g['value']} (goal {g['goal']})" for g in missed)
    return f"# Chaos: faults under load\n\n{table}\n{outages}\n{verdict}\n{extra}"
