"""A burst against a running mesh (`ragmesh up`): several times the generator's cap at once.

    python -m bench.burst --cap 2 [--factor 4] [--engine http://127.0.0.1:8001]

Checks what a user would: every query ends in a terminal state, the engine never runs more
than the cap (sampled from its own /metrics), the queries that waited past the queue timeout
end `queue_timeout`, and an event stream dropped mid-answer resumes with Last-Event-ID
without losing or repeating a token.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from ragmesh.cli import _connection, _settings
from ragmesh.client import TERMINAL, Client

QUESTIONS = [
    "How many days of annual leave do I get?", "What is the hotel cap in London?",
    "How do I reset my password?", "How many office days a week are required?",
    "What is the pension match?", "Where do I report a security incident?",
]


def running(engine: str) -> float:
    text = httpx.get(f"{engine}/metrics", timeout=30).text
    return sum(float(v) for v in re.findall(r"^vllm:num_requests_running(?:{[^}]*})? (\S+)$",
                                            text, re.M))


def sample(engine: str, stop: threading.Event, out: list[float]) -> None:
    while not stop.is_set():
        out.append(running(engine))
        time.sleep(0.05)


def sse(http: httpx.Client, query_id: str, last: str | None) -> list[tuple[str, str, dict]]:
    """(id, event, data) of one connection; drops it after five deltas when `last` is None."""
    headers = {"Last-Event-ID": last} if last else {}
    events, current = [], {}
    with http.stream("GET", f"/v1/queries/{query_id}/events", headers=headers) as resp:
        for line in resp.iter_lines():
            if line.startswith(("id: ", "event: ", "data: ")):
                key, _, value = line.partition(": ")
                current[key] = value
            elif not line and current:
                events.append((current["id"], current["event"], json.loads(current["data"])))
                current = {}
                deltas = sum(e[1] == "delta" for e in events)
                if last is None and deltas == 5:
                    break  # drop the connection mid-answer
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cap", type=int, required=True, help="RAGMESH_GENERATOR_MAX_CONCURRENCY")
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--engine", default="http://127.0.0.1:8001")
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()
    url, key = _connection(_settings())
    n = args.cap * args.factor
    stop, samples = threading.Event(), []
    sampler = threading.Thread(target=sample, args=(args.engine, stop, samples), daemon=True)
    sampler.start()
    with Client(url, key) as client, ThreadPoolExecutor(n) as pool:
        ids = list(pool.map(lambda i: client.submit(QUESTIONS[i % len(QUESTIONS)],
                                                    max_tokens=args.max_tokens), range(n)))
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"},
                            timeout=httpx.Timeout(30, read=600))
        first = sse(http, ids[0], None)
        rest = sse(http, ids[0], first[-1][0])
        views = list(pool.map(lambda i: client.wait_query(i, 900), ids))
    stop.set()
    sampler.join()
    outcomes = collections.Counter(
        v["status"] + (f" ({v['error']['code']})" if v.get("error") else "") for v in views)
    events = first + rest
    ids_seen = [e[0] for e in events if e[1] != "final"]
    streamed = "".join(e[2]["text"] for e in events if e[1] == "delta")
    final = events[-1][2] if events and events[-1][1] == "final" else {}
    resumed_ok = len(ids_seen) == len(set(ids_seen)) and streamed.strip() == (
        final.get("answer") or "").strip()
    print(f"submitted {n} queries (cap {args.cap})")
    for outcome, count in sorted(outcomes.items()):
        print(f"  {outcome}: {count}")
    print(f"  all terminal: {all(v['status'] in TERMINAL for v in views)}")
    print(f"  engine running requests: max {max(samples):.0f} over {len(samples)} samples "
          f"(cap {args.cap})")
    print(f"  stream dropped after {sum(e[1] == 'delta' for e in first)} tokens and resumed: "
          f"{'no loss, no repeat' if resumed_ok else 'MISMATCH'}")


if __name__ == "__main__":
    main()
