"""`ragmesh eval`, feedback and the review export as a user runs them, against `ragmesh up`,
on a corpus and a labeled set the project has never seen (written here, in a temp folder)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ragmesh.evaluate import load_dataset
from ragmesh.procs import free_port
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e

RAGMESH = [sys.executable, "-m", "ragmesh.cli"]
CORPUS = {
    "allotments.md": "# Allotments\n\nA plot on the Riverside allotments costs 38 pounds a "
                     "year. Plot holders share the water butts and must keep the paths clear.",
    "library.txt": "LIBRARY\n\nThe village library lends books for 21 days. Late returns cost "
                   "10 pence a day. The library is closed on Wednesdays.",
    "minibus.html": "<html><body><h1>Community minibus</h1><p>The minibus seats 14 people. Book "
                    "it with the parish clerk, Hattie Marlowe, at least a week ahead.</p>"
                    "</body></html>",
}
QUESTIONS = [
    {"question": "How much does an allotment plot cost per year?",
     "expected_sources": ["allotments.md"], "answer_contains": ["38"]},
    {"question": "For how many days can I borrow a library book?",
     "expected_sources": ["library.txt"], "answer_contains": ["21"]},
    {"question": "Who do I ask to book the community minibus?",
     "expected_sources": ["minibus.html"], "answer_contains": ["Hattie Marlowe"]},
    {"question": "Which football team won the 1966 World Cup final?",
     "expected_sources": [], "answer_contains": []},
]


@dataclass
class Mesh:
    env: dict[str, str]
    cwd: Path
    state: Path

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*RAGMESH, *args], env=self.env, cwd=self.cwd, text=True,
                              capture_output=True, timeout=timeout)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("eval-mesh")
    state = tmp / "state"
    # PYTHONPATH: the code of this checkout, whichever copy of ragmesh is installed.
    env = {**os.environ, "RAGMESH_STATE_DIR": str(state), "RAGMESH_API_PORT": str(free_port()),
           "RAGMESH_ENGINE_PORT": "0", "RAGMESH_ENGINE_MODEL_PATH": str(tiny_model),
           "RAGMESH_GENERATOR_MAX_TOKENS": "16", "RAGMESH_LOG_JSON": "true",
           "PYTHONPATH": str(ROOT)}
    for name in ("RAGMESH_API_KEYS", "RAGMESH_REDIS_URL", "RAGMESH_VECTORSTORE_URI",
                 "RAGMESH_GENERATOR_ENGINE_URL", "RAGMESH_CONFIG"):
        env.pop(name, None)
    log_path = tmp / "up.log"
    with log_path.open("w") as log:
        up = subprocess.Popen([*RAGMESH, "up"], env=env, cwd=tmp, stdout=log,
                              stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 400
            while not (state / "api_url").exists():
                assert up.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "mesh did not come up"
                time.sleep(1)
            corpus = tmp / "village"
            corpus.mkdir()
            for name, text in CORPUS.items():
                (corpus / name).write_text(text)
            mesh = Mesh(env, tmp, state)
            ingest = mesh.cli("ingest", str(corpus), "--collection", "village")
            assert ingest.returncode == 0, ingest.stdout + ingest.stderr
            yield mesh
        finally:
            up.send_signal(signal.SIGINT)
            up.wait(60)


def write_set(path: Path, questions: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps({**q, "collection": "village"}) + "\n"
                            for q in questions))
    return path


def test_an_unseen_labeled_set_runs_and_writes_the_reports(mesh: Mesh) -> None:
    dataset = write_set(mesh.cwd / "village-eval.jsonl", QUESTIONS)
    run = mesh.cli("eval", str(dataset), "--out", str(mesh.cwd / "report"))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "retrieval hit@1" in run.stdout
    report = json.loads((mesh.cwd / "report" / "report.json").read_text())
    m = report["metrics"]
    assert (m["questions"], m["answerable"], m["unanswerable"]) == (4, 3, 1)
    assert (m["hit_at_1"], m["recall_at_k"], m["mrr"]) == (1.0, 1.0, 1.0)
    assert m["unanswerable_abstained"] == 1.0 and m["errors"] == 0
    assert 0 <= m["trust_mean"] <= 1 and m["latency_ms_p50"] > 0
    assert [q["sources"][0] for q in report["questions"][:3]] == list(CORPUS)
    assert (mesh.cwd / "report" / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert "# Evaluation: village-eval.jsonl" in (mesh.cwd / "report" / "report.md").read_text()


def test_the_baseline_gate_fails_when_retrieval_drops(mesh: Mesh) -> None:
    good = write_set(mesh.cwd / "good.jsonl", QUESTIONS[:2])
    assert mesh.cli("eval", str(good), "--out", str(mesh.cwd / "base")).returncode == 0
    # The same questions now expect the wrong documents: hit@1, recall and MRR fall to 0.
    wrong = [{**q, "expected_sources": ["minibus.html"]} for q in QUESTIONS[:2]]
    worse = write_set(mesh.cwd / "worse.jsonl", wrong)
    run = mesh.cli("eval", str(worse), "--baseline", str(mesh.cwd / "base" / "report.json"),
                   "--compare", "retrieval", "--out", str(mesh.cwd / "worse"))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "retrieval hit@1 dropped: 1.000 -> 0.000" in " ".join(run.stdout.split())
    same = mesh.cli("eval", str(good), "--baseline", str(mesh.cwd / "base" / "report.json"),
                    "--compare", "retrieval", "--out", str(mesh.cwd / "same"))
    assert same.returncode == 0, same.stdout + same.stderr


def test_feedback_and_the_review_export_end_to_end(mesh: Mesh) -> None:
    ask = mesh.cli("ask", "--json", "--collection", "village",
                   "How long can I keep a library book?")
    assert ask.returncode == 0, ask.stdout + ask.stderr
    view = json.loads(ask.stdout)
    assert view["trust_score"] is not None and view["citations"][0]["source"] == "library.txt"
    rated = mesh.cli("feedback", view["id"], "down", "--comment", "no number of days")
    assert rated.returncode == 0, rated.stdout + rated.stderr
    gap = mesh.cli("ask", "--json", "--collection", "village", "Is there a swimming pool?")
    assert json.loads(gap.stdout)["low_trust"] is True  # nothing relevant: flagged

    draft = mesh.cwd / "draft.jsonl"
    export = mesh.cli("eval", "export-review", "--out", str(draft))
    assert export.returncode == 0, export.stdout + export.stderr
    lines = {line["question"]: line for line in map(json.loads, draft.read_text().splitlines())}
    book = lines["How long can I keep a library book?"]
    assert "rated_down" in book["review"]["reasons"]
    assert book["review"]["comment"] == "no number of days"
    assert "library.txt" in book["expected_sources"] and book["collection"] == "village"
    pool = lines["Is there a swimming pool?"]
    assert pool["expected_sources"] == [] and pool["review"]["reasons"] == ["low_trust"]
    assert len(load_dataset(draft)) == len(lines)  # the draft is a dataset, ready to label

    # The per-query log line carries what a log pipeline alerts on.
    events = [json.loads(line) for line in
              (mesh.state / "logs" / "generator.log").read_text().splitlines()
              if line.startswith("{") and '"query_finished"' in line]
    [line] = [e for e in events if e["query_id"] == view["id"]]
    assert line["question"] == "How long can I keep a library book?"
    assert line["trust_score"] == view["trust_score"] and line["engine_ms"] > 0
    assert line["chunks"][0][2] == view["citations"][0]["score"]
