"""A client load on the REST API, as users make it: POST /v1/queries, then follow the query's
events (GET /v1/queries/{id}/events) to its end; `concurrency` clients, one query at a time
each."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class Load:
    latencies: list[float] = field(default_factory=list)  # seconds, succeeded queries
    first_tokens: list[float] = field(default_factory=list)  # seconds to the first token
    finals: list[dict[str, Any]] = field(default_factory=list)  # the queries as they ended
    wall: float = 0.0

    @property
    def succeeded(self) -> int:
        return sum(1 for f in self.finals if f.get("status") == "succeeded")

    @property
    def qps(self) -> float:
        return self.succeeded / self.wall if self.wall else 0.0

    def outcomes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.finals:
            code = f.get("status", "?") if not f.get("error") else f["error"]["code"]
            out[code] = out.get(code, 0) + 1
        return out


async def _one(session: aiohttp.ClientSession, url: str, body: dict[str, Any],
               load: Load) -> None:
    started = time.perf_counter()
    async with session.post(f"{url}/v1/queries", json=body) as resp:
        if resp.status != 202:
            raise RuntimeError(f"POST /v1/queries: {resp.status} {await resp.text()}")
        query_id = (await resp.json())["id"]
    final: dict[str, Any] = {}
    first: float | None = None
    async with session.get(f"{url}/v1/queries/{query_id}/events") as resp:
        event = ""
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event:"):
                event = line[6:].strip()
                if event == "delta" and first is None:
                    first = time.perf_counter() - started
            elif line.startswith("data:") and event == "final":
                final = json.loads(line[5:])
    load.finals.append(final or {"status": "lost", "id": query_id})
    if final.get("status") == "succeeded":
        load.latencies.append(time.perf_counter() - started)
        if first is not None:
            load.first_tokens.append(first)


async def _drive(url: str, key: str, questions: list[str], concurrency: int, total: int,
                 params: dict[str, Any]) -> Load:
    load = Load()
    counter = iter(range(total))
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"},
                                     connector=aiohttp.TCPConnector(limit=concurrency * 2),
                                     timeout=timeout) as session:

        async def client() -> None:
            for i in counter:
                body = {"question": questions[i % len(questions)], **params}
                await _one(session, url, body, load)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        load.wall = time.perf_counter() - started
    return load


def drive(url: str, key: str, questions: list[str], concurrency: int, total: int,
          **params: Any) -> Load:
    """`total` queries from `concurrency` clients; `params` go into each query's body."""
    return asyncio.run(_drive(url, key, questions, concurrency, total, params))
