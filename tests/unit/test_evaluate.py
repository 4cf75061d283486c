"""ragmesh/evaluate.py and ragmesh/eval_report.py: judging, metrics, baselines, reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ragmesh import eval_report
from ragmesh.evaluate import (
    Case,
    DatasetError,
    build_report,
    compare,
    draft_cases,
    judge,
    load_dataset,
    metric_names,
    percentile,
    regressions,
    run_cases,
    summarize,
    write_jsonl,
)
from services.generator.prompt import NO_CONTEXT_ANSWER

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HOTEL = Case(question="Hotel cap in London?", expected_sources=["expenses.html"],
             answer_contains=["245", "per night"])
PARKING = Case(question="How many parking spaces?", expected_sources=[])


def view(*sources: str, answer: str = "", status: str = "succeeded", trust: float | None = 0.5,
         total_ms: float | None = 1000.0) -> dict[str, Any]:
    return {"id": "q", "status": status, "answer": answer, "trust_score": trust,
            "low_trust": trust is not None and trust < 0.4,
            "citations": [{"index": i, "source": s, "score": 0.9 - i / 10, "chunk_id": "0",
                           "text": "t", "cited": False} for i, s in enumerate(sources, 1)],
            "timings_ms": {"total": total_ms} if total_ms is not None else {}}


# --- dataset ------------------------------------------------------------------------------------
def test_the_sample_set_is_labeled_with_answerable_and_unanswerable_questions() -> None:
    cases = load_dataset(EXAMPLES / "handbook-eval.jsonl")
    assert len(cases) >= 30
    assert sum(not c.answerable for c in cases) >= 5
    sources = {p.name for p in (EXAMPLES / "handbook").iterdir()}
    assert {s for c in cases for s in c.expected_sources} <= sources


def test_load_dataset_skips_blank_lines_and_accepts_optional_fields(tmp_path: Path) -> None:
    path = tmp_path / "set.jsonl"
    path.write_text('{"question": "q1", "expected_sources": ["a.md"], "answer_contains": ["x"]}'
                    '\n\n{"question": "q2", "expected_sources": [], "collection": "kb", '
                    '"id": "7", "review": {"answer": "?"}}\n')
    one, two = load_dataset(path)
    assert one.answerable and one.collection is None
    assert not two.answerable and two.answer_contains == [] and two.collection == "kb"


@pytest.mark.parametrize(("line", "problem"), [
    ('{"question": "q"}', "expected_sources"),
    ('{"question": "", "expected_sources": []}', "question"),
    ('{"question": "q", "expected_source": [], "expected_sources": []}', "expected_source"),
    ("not json", "line")])
def test_a_bad_line_is_an_error_that_names_it(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "set.jsonl"
    path.write_text('{"question": "ok", "expected_sources": []}\n' + line + "\n")
    with pytest.raises(DatasetError, match=rf"set.jsonl:2: .*{problem}"):
        load_dataset(path)


def test_an_empty_set_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(DatasetError, match="no questions"):
        load_dataset(tmp_path / "e.jsonl")


# --- judging one answer ------------------------------------------------------------------------
def test_rank_and_recall_match_file_names_case_insensitively() -> None:
    row = judge(HOTEL, view("leave-policy.md", "docs/Expenses.HTML", "expenses.html",
                            answer="245 pounds per night [2]"))
    assert row["rank"] == 2 and row["recall"] == 1.0
    assert row["correct"] and row["facts_found"] == ["245", "per night"]


def test_context_facts_tell_whether_the_passages_hold_every_expected_fact() -> None:
    hit = view("expenses.html")
    hit["citations"][0]["text"] = "Tier 1 London: 245 pounds per\nnight."
    assert judge(HOTEL, hit)["context_facts"]
    heading_only = view("expenses.html")
    heading_only["citations"][0]["text"] = "3. Hotels"
    row = judge(HOTEL, heading_only)
    assert row["rank"] == 1 and not row["context_facts"]


def test_recall_counts_each_expected_source() -> None:
    case = Case(question="VPN abroad?", expected_sources=["remote-work.md", "it-help.txt"])
    assert judge(case, view("it-help.txt", "benefits.md"))["recall"] == 0.5


def test_facts_are_case_and_space_insensitive_and_all_are_needed() -> None:
    assert judge(HOTEL, view("expenses.html", answer="245 PER\n night"))["correct"]
    row = judge(HOTEL, view("expenses.html", answer="It is 245 pounds."))
    assert not row["correct"] and row["facts_found"] == ["245"]


def test_an_unanswerable_question_is_right_when_the_answer_abstains() -> None:
    assert judge(PARKING, view(answer=NO_CONTEXT_ANSWER))["correct"]
    assert judge(PARKING, view("a.md", answer="The documents do not say."))["correct"]
    assert not judge(PARKING, view("a.md", answer="There are 40 spaces [1]."))["correct"]


def test_an_abstention_on_an_answerable_question_is_wrong_even_with_the_facts() -> None:
    row = judge(HOTEL, view(answer="I could not find 245 per night."))
    assert row["abstained"] and not row["correct"] and row["rank"] is None


def test_a_failed_query_scores_nothing() -> None:
    row = judge(HOTEL, view("expenses.html", answer="245 per night", status="failed"))
    assert not row["correct"] and not row["abstained"] and row["facts_found"] == []
    assert row["rank"] == 1  # what was retrieved still counts for retrieval


# --- metrics -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("values", "q", "expected"), [
    ([], 50, None), ([7.0], 95, 7.0), ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
    ([10.0, 1.0, 2.0, 3.0, 4.0], 95, 8.8), ([1.0, 2.0], 0, 1.0), ([1.0, 2.0], 100, 2.0)])
def test_percentile_interpolates_between_ranks(values: list[float], q: float,
                                                expected: float | None) -> None:
    assert percentile(values, q) == (pytest.approx(expected) if expected is not None else None)


def rows() -> list[dict[str, Any]]:
    return [judge(HOTEL, view("expenses.html", answer="245 per night", trust=0.8,
                              total_ms=100)),
            judge(HOTEL, view("benefits.md", "expenses.html", answer="245 pounds", trust=0.3,
                              total_ms=300)),
            judge(HOTEL, view("benefits.md", answer="no idea", trust=0.1, total_ms=200)),
            judge(PARKING, view(answer=NO_CONTEXT_ANSWER, trust=0.0, total_ms=50)),
            judge(PARKING, view("a.md", answer="40 spaces", status="failed", trust=None,
                                total_ms=None))]


def test_summarize_reports_retrieval_answers_trust_and_latency() -> None:
    m = summarize(rows())
    assert (m["questions"], m["answerable"], m["unanswerable"]) == (5, 3, 2)
    assert m["hit_at_1"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["recall_at_k"] == pytest.approx(2 / 3, abs=1e-4)
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 0) / 3, abs=1e-4)
    assert m["context_facts"] == 0.0  # the passages' text ("t") holds no fact
    assert m["answer_contains"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["fact_recall"] == pytest.approx((1 + 0.5 + 0) / 3, abs=1e-4)
    assert m["unanswerable_abstained"] == 0.5 and m["answerable_abstained"] == 0.0
    assert m["trust_mean"] == pytest.approx(0.3, abs=1e-4)
    assert m["trust_mean_correct"] == pytest.approx(0.4) and m["trust_mean_incorrect"] == 0.2
    assert m["low_trust_share"] == 0.75
    assert (m["latency_ms_p50"], m["latency_ms_p95"]) == (150.0, 285.0)
    assert m["errors"] == 1


def test_metric_names_expand_groups_and_refuse_unknown_names() -> None:
    assert metric_names("retrieval") == ["hit_at_1", "recall_at_k", "mrr", "context_facts"]
    assert metric_names("mrr, retrieval,trust_mean") == ["mrr", "hit_at_1", "recall_at_k",
                                                         "context_facts", "trust_mean"]
    with pytest.raises(ValueError, match="latency_ms_p95"):
        metric_names("latency_ms_p95")


def test_compare_flags_drops_beyond_the_tolerance_in_the_right_direction() -> None:
    base = {"hit_at_1": 0.9, "mrr": 0.9, "recall_at_k": 0.9, "answerable_abstained": 0.1}
    now = {"hit_at_1": 0.88, "mrr": 0.85, "recall_at_k": 0.95, "answerable_abstained": 0.2}
    result = {r["metric"]: r for r in compare(now, base, list(base), tolerance=0.02)}
    assert not result["hit_at_1"]["regressed"]  # within the tolerance
    assert result["mrr"]["regressed"] and result["mrr"]["delta"] == pytest.approx(-0.05)
    assert not result["recall_at_k"]["regressed"]  # better
    assert result["answerable_abstained"]["regressed"]  # lower is better


def test_compare_treats_a_vanished_metric_as_a_regression() -> None:
    [row] = compare({"mrr": None}, {"mrr": 0.5}, ["mrr"], 0.02)
    assert row["regressed"]
    [row] = compare({"mrr": 0.5}, {}, ["mrr"], 0.02)
    assert not row["regressed"]


def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "set.jsonl"
    write_jsonl([HOTEL.model_dump(exclude_none=True), PARKING.model_dump(exclude_none=True)],
                path)
    return path


def test_a_report_with_a_baseline_lists_regressions(tmp_path: Path) -> None:
    path = dataset(tmp_path)
    baseline = build_report(rows(), dataset=path, run={})
    worse = [judge(HOTEL, view("benefits.md")), *rows()[1:]]
    report = build_report(worse, dataset=path, run={}, baseline=baseline,
                          baseline_path="base.json", compared=["hit_at_1", "mrr"],
                          tolerance=0.02)
    assert report["comparison"]["same_dataset"]
    assert [r["metric"] for r in regressions(report)] == ["hit_at_1", "mrr"]
    assert regressions(baseline) == []


def test_reports_are_written_as_json_markdown_and_png(tmp_path: Path) -> None:
    path = dataset(tmp_path)
    baseline = build_report(rows(), dataset=path, run={})
    report = build_report(rows(), dataset=path, baseline=baseline, baseline_path="b.json",
                          compared=metric_names("retrieval"), tolerance=0.02,
                          run={"api_url": "http://x", "top_k": 4, "started_at": "now",
                               "label": "chunk 500"})
    paths = eval_report.write(report, tmp_path / "out")
    assert json.loads(paths["json"].read_text())["metrics"] == report["metrics"]
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = paths["markdown"].read_text()
    assert "| retrieval hit@1 | 0.333 | 0.333 | +0.000 | ok |" in text
    assert "![metrics, trust and latency](report.png)" in text
    assert "no metric dropped by more than 0.02" in text and "chunk 500" in text
    assert "### Unanswerable questions that got an answer (1)" in text


# --- running ------------------------------------------------------------------------------------
def test_run_cases_keeps_order_and_turns_exceptions_into_error_rows() -> None:
    def ask(case: Case) -> dict[str, Any]:
        if case is PARKING:
            raise ConnectionError("down")
        return view("expenses.html", answer="245 per night")

    done: list[str] = []
    out = run_cases(ask, [HOTEL, PARKING, HOTEL], concurrency=3,
                    on_done=lambda case, _: done.append(case.question))
    assert [r["question"] for r in out] == [HOTEL.question, PARKING.question, HOTEL.question]
    assert out[1]["status"] == "error" and out[1]["error"] == "ConnectionError"
    assert out[0]["correct"] and sorted(done) == sorted(r["question"] for r in out)


# --- review export -------------------------------------------------------------------------------
def kept(query_id: str, question: str, *, abstained: bool = False,
         cited: tuple[bool, ...] = (False, False)) -> dict[str, Any]:
    citations = [{"index": i, "source": s, "chunk_id": "00001", "score": 0.5, "text": "t",
                  "cited": c} for i, (s, c) in enumerate(zip(["b.md", "a.md"], cited,
                                                               strict=True), 1)]
    return {"id": query_id, "question": question, "answer": "x", "collection": "kb",
            "citations": [] if abstained else citations, "trust_score": 0.1,
            "trust": {"abstained": abstained}, "feedback": {"rating": "down", "comment": "no"},
            "reasons": ["low_trust", "rated_down"], "created_at": 5.0}


def test_draft_cases_propose_sources_and_leave_facts_to_label(tmp_path: Path) -> None:
    lines = draft_cases([kept("1", "Dogs at work?", abstained=True),
                         kept("2", "VPN?", cited=(False, True)),
                         kept("3", "Pension?"),
                         kept("4", "dogs  at WORK?")])
    assert [line["question"] for line in lines] == ["Dogs at work?", "VPN?", "Pension?"]
    assert [line["expected_sources"] for line in lines] == [[], ["a.md"], ["b.md", "a.md"]]
    assert all(line["answer_contains"] == [] for line in lines)
    review = lines[1]["review"]
    assert review["query_id"] == "2" and review["rating"] == "down"
    assert review["reasons"] == ["low_trust", "rated_down"]
    assert review["citations"][1] == {"source": "a.md", "chunk_id": "00001", "score": 0.5,
                                      "cited": True}
    write_jsonl(lines, tmp_path / "draft.jsonl")
    assert [c.collection for c in load_dataset(tmp_path / "draft.jsonl")] == ["kb"] * 3
