"""bench/chaos/audit.py and report.py: how an accepted request's end is classified."""

from __future__ import annotations

import pytest

from bench.chaos.audit import (
    Ending,
    Events,
    duplicate_reason,
    end_of,
    parse_sse,
    regressed,
    repeated_chunks,
    second_runs,
    unindexed,
)
from bench.chaos.load import Answer, Submission
from bench.chaos.report import fault_result, goals, totals

pytestmark = pytest.mark.unit


def test_sse_lines_become_statuses_deltas_and_the_final_view() -> None:
    lines = ["id: 1-0", "event: status", 'data: {"status": "queued"}', "",
             "id: 2-0", "event: delta", 'data: {"text": "Twenty"}', "",
             ": keep-alive", "",
             "id: 3-0", "event: delta", 'data: {"text": " seven"}', "",
             "id: 4-0", "event: status", 'data: {"status": "succeeded"}', "",
             "id: 4-0", "event: final", 'data: {"status": "succeeded", "answer": "x"}', ""]
    events = parse_sse(lines)
    assert events.statuses == ["queued", "succeeded"]
    assert events.deltas == ["Twenty", " seven"]
    assert events.final == {"status": "succeeded", "answer": "x"}


def test_an_answer_streamed_once_is_not_a_duplicate() -> None:
    events = Events(statuses=["queued", "generating", "succeeded"], deltas=[" 27", " days"])
    assert duplicate_reason(events, "succeeded", "27 days") == ""


def test_two_terminal_events_are_a_duplicate() -> None:
    events = Events(statuses=["generating", "succeeded", "failed"])
    assert duplicate_reason(events, "failed", "") == "2 terminal events"


def test_tokens_streamed_twice_are_a_duplicate() -> None:
    events = Events(statuses=["succeeded"], deltas=["27", " days", "27", " days"])
    assert duplicate_reason(events, "succeeded", "27 days") != ""


def test_a_lost_generation_keeps_an_answer_shorter_than_its_stream() -> None:
    # worker_lost: the record holds the partial answer last saved, the stream a little more.
    events = Events(statuses=["generating", "failed"], deltas=["27", " days", " of"])
    assert duplicate_reason(events, "failed", "27 days") == ""


def test_a_stage_run_again_shows_as_a_step_back() -> None:
    assert regressed(["queued", "embedding", "retrieving", "queued", "generating", "embedding",
                      "succeeded"])
    # Waiting for a generation slot ("queued" after retrieving) is not a step back.
    assert not regressed(["queued", "embedding", "retrieving", "queued", "generating",
                          "succeeded"])


def test_chunks_stored_twice_are_counted() -> None:
    rows = [("o:a", "00000"), ("o:a", "00001"), ("o:a", "00001"), ("o:b", "00000"),
            ("o:a", "00001")]
    assert repeated_chunks(rows) == 2


def test_an_indexed_document_must_have_all_its_chunks_stored() -> None:
    docs = [{"id": "a", "status": "indexed", "chunks": 2},
            {"id": "b", "status": "indexed", "chunks": 1},
            {"id": "c", "status": "failed", "chunks": 0}]
    rows = [("o:a", "00000"), ("o:a", "00001")]
    assert unindexed(docs, rows, "o") == ["b"]


def test_a_second_query_that_ran_for_one_submission_is_a_duplicate() -> None:
    records = [("How many days? (ref aaaaaaaaaaaa)", "succeeded"),
               ("How many days? (ref aaaaaaaaaaaa)", "succeeded"),  # ran twice
               ("Hotel cap? (ref bbbbbbbbbbbb)", "succeeded"),
               ("Hotel cap? (ref bbbbbbbbbbbb)", "timed_out"),  # an orphan that never ran
               ("Not ours (ref cccccccccccc)", "succeeded"),
               ("Not ours (ref cccccccccccc)", "succeeded")]
    accepted = {"aaaaaaaaaaaa": "q1", "bbbbbbbbbbbb": "q2"}
    assert second_runs(records, accepted) == 1


def test_a_missing_record_is_lost_and_an_unfinished_one_stuck() -> None:
    assert end_of(None, settled=True) == ("lost", "not_found")
    assert end_of({"status": "generating"}, settled=False) == ("stuck", "generating")
    assert end_of({"status": "failed", "error": {"code": "worker_lost"}}, settled=True) == (
        "failed", "worker_lost")


def _sub(kind: str, sub_id: str | None, accepted_at: float | None, *answers: Answer,
         refused: str = "") -> Submission:
    return Submission(kind, sub_id or "tag", 0.0, sub_id, accepted_at, refused, list(answers))


def test_a_fault_result_counts_by_kind_and_code() -> None:
    subs = [_sub("query", "q1", 1.0), _sub("query", "q2", 1.0), _sub("query", "q3", 12.0),
            _sub("query", None, None, Answer(11.0, 503, "queue_unavailable", True, True),
                 refused="queue_unavailable"),
            _sub("document", "d1", 1.0, Answer(11.0, 500, "internal_error", True, False))]
    endings = [Ending("query", "q1", "succeeded", finished_at=20.0),
               Ending("query", "q2", "failed", "worker_lost", finished_at=30.0),
               Ending("query", "q3", "stuck", "generating"),
               Ending("document", "d1", "lost", "not_found")]
    r = fault_result("f", "what", subs, endings, at=10.0, back=14.0, recovered_s=5.0,
                     repeated_chunks=1, unindexed=["d9"], restarted={"valkey": 1})
    q = r["queries"]
    assert (q["submitted"], q["accepted"], q["succeeded"]) == (4, 3, 1)
    assert q["failed"] == {"failed/worker_lost": 1} and q["refused"] == {"queue_unavailable": 1}
    assert q["stuck"] == 1 and q["affected"] == 2 and q["affected_ended_within_s"] == 20.0
    assert totals(r) == {"lost": 2, "duplicated": 1, "stuck": 1}
    assert r["improper_answers"] == 1  # the 500
    met = {g["name"].split(": ", 1)[1]: g["met"] for g in goals([r])}
    assert not met["lost"] and not met["stuck"] and met["recovered (s)"]
