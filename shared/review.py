"""The review loop's storage: feedback on answers, and the answers kept for review.

An answer is kept when its trust score is low or someone rated it down: a snapshot of the
question, the answer, its citations with their scores and the trust details, under the key
that asked, for `review_ttl` seconds (so it outlives the query record if need be), at most
`max_items` per key, newest first. `ragmesh eval export-review` turns them into a dataset
draft to label.

Layout: `ragmesh:review:<owner>` is a sorted set of query ids by the time they were kept;
`ragmesh:review:<owner>:<query id>` a hash with the `snapshot` and one `reason:<why>` field
per reason, so two reasons arriving at once never overwrite each other.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import redis

from shared.records import PREFIX, QueryRecords, query_view

LOW_TRUST = "low_trust"
RATED_DOWN = "rated_down"

# Feedback goes on the record whatever its status: the status script refuses to touch a
# finished record, and only finished ones are rated. Never recreate an expired record.
_SET_FEEDBACK = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'feedback', ARGV[1])
return 1
"""

_SNAPSHOT_FIELDS = ("id", "status", "question", "answer", "citations", "trust_score", "trust",
                    "feedback", "created_at")


def save_feedback(records: QueryRecords, query_id: str, feedback: Mapping[str, Any]) -> bool:
    """Store feedback with the query (the latest rating wins). False when the record is gone."""
    script = records.r.register_script(_SET_FEEDBACK)
    return bool(script(keys=[records.key(query_id)], args=[json.dumps(dict(feedback))]))


def snapshot(raw: Mapping[str, str]) -> dict[str, Any]:
    """What a reviewer needs from a query record: question, answer, citations, trust."""
    view = query_view(raw)
    out = {k: view[k] for k in _SNAPSHOT_FIELDS}
    out["collection"] = json.loads(raw.get("params") or "{}").get("collection")
    return out


class ReviewQueue:
    def __init__(self, client: redis.Redis, ttl_seconds: int, max_items: int) -> None:
        self.r, self.ttl, self.max_items = client, ttl_seconds, max_items

    def _index(self, owner: str) -> str:
        return f"{PREFIX}:review:{owner}"

    def _item(self, owner: str, query_id: str) -> str:
        return f"{PREFIX}:review:{owner}:{query_id}"

    def keep(self, records: QueryRecords, query_id: str, reason: str,
             now: float | None = None) -> bool:
        """Keep (or refresh) the query's snapshot for review, for `reason`. False when the
        query record is gone."""
        raw = records.raw(query_id)
        if not raw:
            return False
        now = now or time.time()
        owner, index = raw["owner"], self._index(raw["owner"])
        item = self._item(owner, query_id)
        with self.r.pipeline() as pipe:
            pipe.hset(item, mapping={"snapshot": json.dumps(snapshot(raw)),
                                     f"reason:{reason}": now})
            pipe.expire(item, self.ttl)
            pipe.zadd(index, {query_id: now})
            pipe.zremrangebyscore(index, "-inf", now - self.ttl)
            pipe.expire(index, self.ttl)
            pipe.zcard(index)
            excess = int(pipe.execute()[-1]) - self.max_items
        if excess > 0:  # bounded: the oldest go first
            dropped = [m.decode() for m, _ in self.r.zpopmin(index, excess)]
            self.r.delete(*[self._item(owner, q) for q in dropped])
        return True

    def drop(self, records: QueryRecords, query_id: str, reason: str) -> None:
        """Withdraw one reason (a rating changed to up); forget the answer when none is left,
        else refresh its snapshot."""
        raw = records.raw(query_id)
        if not raw:
            return
        item = self._item(raw["owner"], query_id)
        self.r.hdel(item, f"reason:{reason}")
        if any(k.startswith(b"reason:") for k in self.r.hkeys(item)):
            self.r.hset(item, "snapshot", json.dumps(snapshot(raw)))
        else:
            self.r.delete(item)
            self.r.zrem(self._index(raw["owner"]), query_id)

    def items(self, owner: str, limit: int = 1000,
              now: float | None = None) -> tuple[int, list[dict[str, Any]]]:
        """(how many are kept, the newest `limit` of them) for one key."""
        index = self._index(owner)
        self.r.zremrangebyscore(index, "-inf", (now or time.time()) - self.ttl)
        kept = self.r.zrevrange(index, 0, limit - 1, withscores=True)
        with self.r.pipeline() as pipe:
            for query_id, _ in kept:
                pipe.hgetall(self._item(owner, query_id.decode()))
            rows = pipe.execute()
        out = []
        for (_, kept_at), row in zip(kept, rows, strict=True):
            if b"snapshot" not in row:
                continue  # expired between the two reads
            reasons = sorted(k.decode()[len("reason:"):] for k in row
                             if k.startswith(b"reason:"))
            out.append({**json.loads(row[b"snapshot"]), "reasons": reasons,
                        "kept_at": kept_at})
        return int(self.r.zcard(index)), out
