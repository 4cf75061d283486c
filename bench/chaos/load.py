"""A steady load of queries and documents through the REST API, the way a careful client
sends it: one Idempotency-Key per request, kept through its retries, waiting out 429/503 as
Retry-After says (and retrying a request whose answer never came). Every HTTP answer is
recorded, so an outage can be checked for what the API said while it lasted."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

# A request is given up after this long of refusals (its submission then counts as refused).
GIVE_UP_S = 90.0
RETRYABLE = {409, 429, 503}


@dataclass
class Answer:
    """One HTTP answer (or a transport error, status 0) to a POST."""

    at: float
    status: int
    code: str = ""
    json: bool = False
    retry_after: bool = False


@dataclass
class Submission:
    kind: str  # "query" or "document"
    tag: str  # unique per submission, also inside the question or text
    started: float
    id: str | None = None  # set when the API answered 202
    accepted_at: float | None = None
    refused: str = ""  # the last code when given up
    answers: list[Answer] = field(default_factory=list)


def _answer(response: httpx.Response) -> Answer:
    code = ""
    is_json = response.headers.get("content-type", "").startswith("application/json")
    if is_json and response.status_code >= 400:
        try:
            code = response.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = "?"
    return Answer(time.time(), response.status_code, code, is_json,
                  "retry-after" in response.headers)


def _wait_s(response: httpx.Response) -> float:
    try:
        return min(10.0, max(0.2, float(response.headers.get("Retry-After", "1"))))
    except ValueError:
        return 1.0


class Load:
    """POSTs queries (`query_rate` per second) and documents (`doc_rate`) until stopped."""

    def __init__(self, api_url: str, key: str, questions: list[str], query_rate: float,
                 doc_rate: float, collection: str = "chaos", max_tokens: int = 32) -> None:
        self.http = httpx.Client(base_url=api_url, timeout=httpx.Timeout(15.0),
                                 headers={"Authorization": f"Bearer {key}"})
        self.questions, self.collection, self.max_tokens = questions, collection, max_tokens
        self.query_rate, self.doc_rate = query_rate, doc_rate
        self.submissions: list[Submission] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(16, thread_name_prefix="chaos-load")
        self._threads: list[threading.Thread] = []
        self._n = 0

    # --- the two request kinds
    def _next(self) -> int:
        with self._lock:
            self._n += 1
            return self._n

    def query_body(self, tag: str, n: int) -> dict[str, Any]:
        question = self.questions[n % len(self.questions)]
        return {"question": f"{question} (ref {tag})", "max_tokens": self.max_tokens}

    def document_body(self, tag: str, n: int) -> dict[str, Any]:
        sentences = [f"Chaos note {tag}, part {i}: the storeroom code for shift {i} is "
                     f"{(n * 7919 + i * 104729) % 100000:05d}, and the spare keys hang in "
                     f"cabinet {i % 9 + 1}." for i in range(6)]
        return {"text": " ".join(sentences), "source": f"chaos-{tag}.md",
                "document_id": f"chaos-{tag}", "collection": self.collection}

    def _post(self, kind: str) -> None:
        n = self._next()
        sub = Submission(kind, uuid.uuid4().hex[:12], time.time())
        with self._lock:
            self.submissions.append(sub)
        body = self.query_body(sub.tag, n) if kind == "query" else self.document_body(sub.tag, n)
        path = "/v1/queries" if kind == "query" else "/v1/documents"
        headers = {"Idempotency-Key": f"chaos-{sub.tag}"}
        while True:
            try:
                response = self.http.post(path, json=body, headers=headers)
            except httpx.HTTPError as exc:  # no answer: the request may or may not have landed
                sub.answers.append(Answer(time.time(), 0, type(exc).__name__))
                wait = 1.0
            else:
                sub.answers.append(_answer(response))
                if response.status_code == 202:
                    sub.id, sub.accepted_at = response.json()["id"], time.time()
                    return
                if response.status_code not in RETRYABLE:
                    sub.refused = sub.answers[-1].code or str(response.status_code)
                    return
                wait = _wait_s(response)
            if time.time() + wait - sub.started > GIVE_UP_S:
                sub.refused = sub.answers[-1].code or str(sub.answers[-1].status)
                return
            time.sleep(wait)

    # --- steady rates
    def _pace(self, kind: str, rate: float) -> None:
        if rate <= 0:
            return
        interval, next_at = 1.0 / rate, time.monotonic()
        while not self._stop.is_set():
            self._pool.submit(self._post, kind)
            next_at += interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def start(self) -> Load:
        self._stop.clear()
        self._threads = [threading.Thread(target=self._pace, args=(kind, rate), daemon=True,
                                          name=f"chaos-{kind}")
                         for kind, rate in (("query", self.query_rate),
                                            ("document", self.doc_rate))]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop submitting and wait for the requests in hand to be answered or given up."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._pool.shutdown(wait=True)
        self._pool = ThreadPoolExecutor(16, thread_name_prefix="chaos-load")

    def take(self) -> list[Submission]:
        """The submissions so far, forgetting them (one fault's worth)."""
        with self._lock:
            taken, self.submissions = self.submissions, []
        return taken

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.http.close()
