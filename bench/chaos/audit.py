"""After a fault: how every accepted query and document ended, read back through the API, and
what the vector store holds. The classifying functions are pure (tests/unit/test_chaos_audit.py).

    lost        accepted (202), then gone: its record is missing, or a document reported
                `indexed` whose chunks are not all in the vector store
    duplicated  the same work shown twice: two terminal events for one query, answer tokens
                streamed twice, a chunk stored twice, a second record that ran for one
                submission
    stuck       accepted, and still not finished when the settling time is up
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.chaos.load import Submission
from bench.chaos.mesh import ROOT

TERMINAL = {"succeeded", "failed", "timed_out", "cancelled", "indexed"}
QUERY_TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}


@dataclass
class Ending:
    """How one accepted submission ended."""

    kind: str
    id: str
    status: str  # a terminal status, or "lost" / "stuck"
    code: str = ""  # the error code of a failed (or lost) one
    duplicated: str = ""  # why it counts as duplicated, if it does
    regressed: bool = False  # its status went back to an earlier stage on the way
    finished_at: float | None = None


@dataclass
class Events:
    statuses: list[str] = field(default_factory=list)
    deltas: list[str] = field(default_factory=list)
    final: dict[str, Any] | None = None


_ORDER = {"queued": 0, "embedding": 1, "retrieving": 2, "generating": 4}


def parse_sse(lines: Iterable[str]) -> Events:
    events, current = Events(), {}
    for line in lines:
        if line.startswith(("event: ", "data: ")):
            key, _, value = line.partition(": ")
            current[key] = value
        elif not line and current:
            data = json.loads(current.get("data", "{}"))
            kind = current.get("event")
            if kind == "status":
                events.statuses.append(data["status"])
            elif kind == "delta":
                events.deltas.append(data["text"])
            elif kind == "final":
                events.final = data
            current = {}
    return events


def duplicate_reason(events: Events, status: str, answer: str | None) -> str:
    """Why a query's events show its work twice, or ''."""
    ends = [s for s in events.statuses if s in QUERY_TERMINAL]
    if len(ends) > 1:
        return f"{len(ends)} terminal events"
    # A succeeded query's answer is exactly what was streamed (a query that ended otherwise
    # keeps the partial answer last saved, which may lag behind its stream).
    streamed = "".join(events.deltas).strip()
    if status == "succeeded" and streamed and len(streamed) > len((answer or "").strip()):
        return "more answer tokens streamed than the answer holds"
    return ""


def regressed(statuses: Sequence[str]) -> bool:
    """Whether the status went back to an earlier stage (a stage run again after a crash).
    `queued` after retrieving is the wait for a generation slot, not a step back."""
    stages = [_ORDER.get(s, 9) for s in statuses if s != "queued"]
    return any(b < a for a, b in zip(stages, stages[1:], strict=False))


def repeated_chunks(rows: Iterable[tuple[str, str]]) -> int:
    """How many (doc_key, chunk_id) rows are there more than once."""
    return sum(n - 1 for n in Counter(rows).values() if n > 1)


def end_of(view: dict[str, Any] | None, settled: bool) -> tuple[str, str]:
    """(status, code) of one submission from its last view (None: the API says 404)."""
    if view is None:
        return "lost", "not_found"
    if not settled:
        return "stuck", view["status"]
    return view["status"], (view.get("error") or {}).get("code", "")


class Auditor:
    """Reads queries, documents and their events back through the API."""

    def __init__(self, api_url: str, key: str) -> None:
        self.http = httpx.Client(base_url=api_url, timeout=httpx.Timeout(30.0),
                                 headers={"Authorization": f"Bearer {key}"})
        self._looked: dict[str, float] = {}

    def close(self) -> None:
        self.http.close()

    def view(self, sub: Submission, tries: int = 30) -> dict[str, Any] | None:
        """The submission as the API shows it now; None when the API says 404."""
        path = f"/v1/queries/{sub.id}" if sub.kind == "query" else f"/v1/documents/{sub.id}"
        for attempt in range(tries):  # the API may refuse for a moment (503) after a fault
            response = self.http.get(path)
            if response.status_code == 404:
                return None
            if response.status_code == 200:
                return dict(response.json())
            if attempt + 1 < tries:
                time.sleep(1)
        response.raise_for_status()
        raise httpx.HTTPError(f"{path}: {response.status_code}")

    def watch(self, subs: Sequence[Submission], ended: dict[str, tuple[float, Any]],
              every_s: float = 2.0) -> None:
        """One pass: note when each accepted, unfinished submission is first seen ended (or
        missing) in `ended` (id -> (time, last view)), looking at each at most every
        `every_s` seconds (the audit must not load the API much)."""
        now = time.monotonic()
        for sub in list(subs):
            if not sub.id or sub.id in ended or now - self._looked.get(sub.id, 0.0) < every_s:
                continue
            self._looked[sub.id] = now
            try:
                view = self.view(sub, tries=1)
            except httpx.HTTPError:
                continue  # the API refuses for a moment (503): look again next pass
            if view is None or view["status"] in TERMINAL:
                ended[sub.id] = (time.time(), view)

    def events(self, query_id: str) -> Events:
        with self.http.stream("GET", f"/v1/queries/{query_id}/events") as response:
            if response.status_code != 200:
                return Events()
            return parse_sse(response.iter_lines())

    def endings(self, subs: Sequence[Submission],
                ended: dict[str, tuple[float, Any]]) -> list[Ending]:
        out = []
        for sub in subs:
            if not sub.id:
                continue
            at, view = ended.get(sub.id, (None, None))
            if at is None:
                view = self.view(sub)  # still running: stuck
            status, code = end_of(view, settled=at is not None)
            ending = Ending(sub.kind, sub.id, status, code, finished_at=at)
            if sub.kind == "query" and status in QUERY_TERMINAL:
                events = self.events(sub.id)
                ending.duplicated = duplicate_reason(events, status, view.get("answer"))
                ending.regressed = regressed(events.statuses)
            out.append(ending)
        return out


_REF = re.compile(r"\(ref ([0-9a-f]{12})\)$")


def second_runs(records: Iterable[tuple[str, str]], accepted: dict[str, str]) -> int:
    """Queries that ran for a submission besides the one the client was given: from every
    query record's (question, status), and the id the client got per submission tag. (A
    POST whose first try created a query and then failed, retried later under the same
    Idempotency-Key once its claim had lapsed, would make a second one.)"""
    seen: Counter[str] = Counter()
    for question, status in records:
        match = _REF.search(question)
        if match and match.group(1) in accepted and status == "succeeded":
            seen[match.group(1)] += 1
    return sum(n - 1 for n in seen.values() if n > 1)


def query_records(client: Any) -> list[tuple[str, str]]:
    """(question, status) of every query record in Redis."""
    out = []
    for key in client.scan_iter(match="ragmesh:q:*", count=1000):
        if key.count(b":") == 2:
            question, status = client.hmget(key, "question", "status")
            if question and status:
                out.append((question.decode(), status.decode()))
    return out


def stored_chunks(milvus_uri: str, collections: Sequence[str],
                  tries: int = 3) -> list[tuple[str, str]]:
    """(doc_key, chunk_id) of every row in `collections` of the vector store, read by a
    process of its own (bench.chaos.milvus_rows): the harness keeps no gRPC client, whose
    connection could go stale between audits (pymilvus shares one per address)."""
    for attempt in range(tries):
        done = subprocess.run([sys.executable, "-m", "bench.chaos.milvus_rows", milvus_uri,
                               *collections], capture_output=True, text=True, timeout=180,
                              cwd=ROOT)
        if done.returncode == 0:
            return [(row[0], row[1]) for row in json.loads(done.stdout)]
        if attempt + 1 == tries:
            raise RuntimeError(f"reading the vector store failed: {done.stderr[-2000:]}")
        time.sleep(2)
    return []


def unindexed(documents: Sequence[dict[str, Any]], rows: Sequence[tuple[str, str]],
              owner: str) -> list[str]:
    """Documents reported `indexed` whose chunks are not all stored (each exactly once)."""
    per_doc = Counter(doc_key for doc_key, _ in rows)
    return [d["id"] for d in documents if d["status"] == "indexed"
            and per_doc.get(f"{owner}:{d['id']}", 0) != d["chunks"]]
