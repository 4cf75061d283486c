"""Query and document records in Redis: the state a client polls.

A record is a Redis hash. Status changes go through one Lua script that refuses to move a
record out of a terminal state, so a late worker can never overwrite `cancelled` or
`timed_out` with `succeeded`, and two workers can never both finish one query.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from enum import IntEnum
from typing import Any

import redis
from redis.client import Pipeline

from shared.jobs import (
    TERMINAL_QUERY,
    DocumentStatus,
    ErrorInfo,
    QueryParams,
    QueryStatus,
)

PREFIX = "ragmesh"

# A status change: returns -1 when the record is gone, 0 when it is in a refused state, 1 when
# updated. KEYS[1] the record, KEYS[2] (optional) its event stream, KEYS[3] (optional) its
# tombstone; ARGV[1] refused statuses, ARGV[2] the new status or '', ARGV[3] the record's field
# that holds how many seconds to keep it from now on, or '' (the record keeps its expiry), and
# field/value pairs from ARGV[first]. A status change is appended to the event stream in the
# same step, so the stream never misses or invents one; a record that ends gets its retention
# in that step too, whoever ends it, and its tombstone outlives it by the record's `tomb_s`.
_REFUSE = """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return -1 end
for s in string.gmatch(ARGV[1], '[^,]+') do
  if s == cur then return 0 end
end
"""
_APPLY = """
redis.call('HSET', KEYS[1], unpack(ARGV, first))
if KEYS[2] and ARGV[2] ~= '' and ARGV[2] ~= cur then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', 10000, '*', 'type', 'status', 'status', ARGV[2])
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
end
local keep = ARGV[3] ~= '' and tonumber(redis.call('HGET', KEYS[1], ARGV[3]))
if keep then
  redis.call('EXPIRE', KEYS[1], keep)
  if KEYS[2] then redis.call('EXPIRE', KEYS[2], keep) end
  local tomb = tonumber(redis.call('HGET', KEYS[1], 'tomb_s'))
  if KEYS[3] and tomb then redis.call('EXPIRE', KEYS[3], keep + tomb) end
end
return 1
"""
_TRANSITION = _REFUSE + "local first = 4\n" + _APPLY

# A query stage starts in one step: the transition above, unless the query is overdue (2: the
# caller ends it) or the stage was claimed by another job (3). A stage is run by the first job
# that claims it; a duplicate of that job (a stage handed on twice after a worker died at the
# wrong moment) finds the claim taken and stops. ARGV[4] the claim's field, ARGV[5] the job id
# ('' for no claim), ARGV[6] now, ARGV[7] the query's id, which leaves the set of queries
# waiting for a generation KEYS[4] when that is given; fields from ARGV[8].
_BEGIN_STAGE = "if KEYS[4] then redis.call('ZREM', KEYS[4], ARGV[7]) end\n" + _REFUSE + """
local now = tonumber(ARGV[6])
local deadline = tonumber(redis.call('HGET', KEYS[1], 'deadline'))
if deadline and deadline <= now then return 2 end
if cur == 'queued' and redis.call('HGET', KEYS[1], 'queue_stage') == 'generate' then
  local due = tonumber(redis.call('HGET', KEYS[1], 'queue_deadline'))
  if due and due <= now then return 2 end
end
if ARGV[5] ~= '' then
  local claim = redis.call('HGET', KEYS[1], ARGV[4])
  if claim and claim ~= ARGV[5] then return 3 end
end
local first = 8
""" + _APPLY


class Begun(IntEnum):
    """How QueryRecords.begin_stage went."""

    GONE = -1
    ENDED = 0
    STARTED = 1
    OVERDUE = 2
    CLAIMED = 3


STAGES = ("embed", "retrieve", "generate")


def owner_of(api_key: str) -> str:
    """A stable, non-reversible owner id for an API key: keys themselves are never stored."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:24]


def new_id() -> str:
    return uuid.uuid4().hex


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _flatten(fields: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for key, value in fields.items():
        out += [key, value if isinstance(value, str) else _dumps(value)]
    return out


class Records:
    """Base for the two record kinds: key layout, atomic transitions, TTLs."""

    kind = ""
    terminal: frozenset[str] = frozenset()

    def __init__(self, client: redis.Redis, ttl_seconds: int) -> None:
        self.r = client
        self.ttl = ttl_seconds
        self._transition = client.register_script(_TRANSITION)

    def key(self, record_id: str) -> str:
        return f"{PREFIX}:{self.kind}:{record_id}"

    def event_keys(self, record_id: str) -> list[str]:
        return []

    def transition(self, record_id: str, status: str | None = None, *, keep_field: str = "",
                   **fields: Any) -> bool:
        """Update fields (and status) unless the record is terminal. True when applied.
        `keep_field`: the record's field holding the seconds to keep it from now on."""
        if status is not None:
            fields["status"] = status
        fields["updated_at"] = time.time()
        refused = ",".join(sorted(self.terminal))
        result = self._transition(keys=[self.key(record_id), *self.event_keys(record_id)],
                                  args=[refused, status or "", keep_field, *_flatten(fields)])
        return int(result) == 1

    def raw(self, record_id: str) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.r.hgetall(self.key(record_id)).items()}


class QueryRecords(Records):
    """Query records. Each one carries its own retention (`keep_s` once succeeded,
    `keep_failed_s` once it ended otherwise, `tomb_s` for its tombstone), so whichever process
    ends it applies the API's settings. The tombstone (the owner id, under its own key) outlives
    the record, so its owner can be told the result expired rather than never existed."""

    kind = "q"
    terminal = frozenset(str(s) for s in TERMINAL_QUERY)
    waiting_key = f"{PREFIX}:waiting:generate"

    def __init__(self, client: redis.Redis, ttl_seconds: int, failed_ttl_seconds: int | None = None,
                 tombstone_seconds: int = 0) -> None:
        super().__init__(client, ttl_seconds)
        self.failed_ttl = failed_ttl_seconds or ttl_seconds
        self.tombstone_ttl = tombstone_seconds
        self._begin = client.register_script(_BEGIN_STAGE)

    def events_key(self, query_id: str) -> str:
        return f"{PREFIX}:q:{query_id}:events"

    def tombstone_key(self, query_id: str) -> str:
        return f"{PREFIX}:q:{query_id}:gone"

    def event_keys(self, record_id: str) -> list[str]:
        return [self.events_key(record_id), self.tombstone_key(record_id)]

    def expired_for(self, query_id: str, owner: str) -> bool:
        """Whether `query_id` was `owner`'s query whose record is gone (its tombstone lives)."""
        value = self.r.get(self.tombstone_key(query_id))
        return value is not None and value.decode() == owner

    def publish_delta(self, query_id: str, text: str) -> None:
        """A piece of answer for the event stream (Server-Sent Events read it)."""
        self.r.xadd(self.events_key(query_id), {"type": "delta", "text": text},
                    maxlen=10000, approximate=True)

    def wait_for_generation(self, query_id: str, timeout_s: float, pipe: Pipeline,
                            **fields: Any) -> float | None:
        """The query now waits for a generation slot, for at most `timeout_s` (and `fields`
        are written); returns when its wait ends, or None when the query ended already.
        `pipe` gets what enters it in the queue of waiting queries: the caller sends it with
        the job that will run the generation."""
        now = time.time()
        deadline = now + timeout_s
        if not self.transition(query_id, QueryStatus.QUEUED.value, queue_stage="generate",
                               queued_since=now, queue_deadline=deadline, **fields):
            return None
        pipe.zremrangebyscore(self.waiting_key, "-inf", now - 24 * 3600)
        pipe.zadd(self.waiting_key, {query_id: now})
        return deadline

    def left_queue(self, query_id: str) -> None:
        self.r.zrem(self.waiting_key, query_id)

    def queue_position(self, query_id: str) -> int | None:
        rank = self.r.zrank(self.waiting_key, query_id)
        return None if rank is None else int(rank) + 1

    def create(self, owner: str, question: str, params: QueryParams, deadline: float,
               pipe: Pipeline | None = None) -> str:
        """A new query, queued. With `pipe` (a transaction), its commands go there and the
        caller sends them, with the job that starts the query: both or neither."""
        query_id = new_id()
        now = time.time()
        key = self.key(query_id)
        fields = {"id": query_id, "owner": owner, "status": QueryStatus.QUEUED.value,
                  "question": question, "params": params.model_dump(mode="json"),
                  "created_at": now, "updated_at": now, "deadline": now + deadline,
                  "keep_s": self.ttl, "keep_failed_s": self.failed_ttl,
                  "tomb_s": self.tombstone_ttl}
        # Until it ends (at its deadline at the latest) a record lives long enough to be kept
        # its full retention after; ending it sets the retention anew.
        ttl = int(deadline) + max(self.ttl, self.failed_ttl)
        events = self.events_key(query_id)
        with self.r.pipeline() if pipe is None else contextlib.nullcontext(pipe) as p:
            p.hset(key, mapping=dict(zip(*[iter(_flatten(fields))] * 2, strict=True)))
            p.expire(key, ttl)
            p.xadd(events, {"type": "status", "status": QueryStatus.QUEUED.value})
            p.expire(events, ttl)
            if self.tombstone_ttl:
                p.set(self.tombstone_key(query_id), owner, ex=ttl + self.tombstone_ttl)
            if pipe is None:
                p.execute()
        return query_id

    def get(self, query_id: str, owner: str | None = None) -> dict[str, Any] | None:
        """The client-facing view, or None when missing or owned by someone else."""
        raw = self.raw(query_id)
        if not raw or (owner is not None and raw.get("owner") != owner):
            return None
        view = query_view(raw)
        if raw["status"] == QueryStatus.QUEUED:
            stage = raw.get("queue_stage") or "embed"
            since = float(raw.get("queued_since") or raw["created_at"])
            view["queue"] = {
                "stage": stage,
                "position": self.queue_position(query_id) if stage == "generate" else None,
                "waited_ms": round((time.time() - since) * 1000, 1)}
        return view

    def status(self, query_id: str) -> str | None:
        value = self.r.hget(self.key(query_id), "status")
        return value.decode() if value else None

    def is_active(self, query_id: str) -> bool:
        status = self.status(query_id)
        return status is not None and status not in self.terminal

    def begin_stage(self, query_id: str, stage: str, status: QueryStatus, job_id: str,
                    waited_s: float, carried: Mapping[str, float] | None = None) -> Begun:
        """Claim `stage` for job `job_id` ('' for no claim) and mark it started, in one step,
        writing the work times `carried` from the stages before. A generation leaves the
        queue of those waiting for a slot in that step too."""
        now = time.time()
        fields = {**{f"t_{k}": v for k, v in (carried or {}).items() if k in STAGES},
                  f"w_{stage}": waited_s * 1000, "updated_at": now, "status": status.value}
        if job_id:
            fields[f"claim_{stage}"] = job_id
        refused = ",".join(sorted(self.terminal))
        keys = [self.key(query_id), *self.event_keys(query_id)]
        if stage == "generate":
            keys.append(self.waiting_key)
        result = self._begin(keys=keys, args=[refused, status.value, "", f"claim_{stage}",
                                              job_id, now, query_id, *_flatten(fields)])
        return Begun(int(result))

    def finish(self, query_id: str, status: QueryStatus, error: ErrorInfo | None = None,
               **fields: Any) -> bool:
        if error is not None:
            fields["error"] = error.model_dump()
        keep = "keep_s" if status == QueryStatus.SUCCEEDED else "keep_failed_s"
        applied = self.transition(query_id, status.value, keep_field=keep,
                                  finished_at=time.time(), **fields)
        self.left_queue(query_id)
        return applied

    def timings_ms(self, query_id: str) -> dict[str, float]:
        """Each stage's wait and work time and the total so far, as the API shows them."""
        raw = self.raw(query_id)
        return query_view(raw)["timings_ms"] if raw else {}

    def expire_if_overdue(self, query_id: str, now: float | None = None,
                          raw: dict[str, str] | None = None) -> bool:
        """End a query that outlived its deadline (a lost job, a dead worker) or waited too
        long for a generation slot: never stuck, whoever looks first. `raw`: the record, when
        the caller has just read it."""
        raw = self.raw(query_id) if raw is None else raw
        if not raw or raw.get("status") in self.terminal:
            return False
        now = now or time.time()
        if raw.get("status") == QueryStatus.QUEUED and raw.get("queue_stage") == "generate" \
                and float(raw.get("queue_deadline", "inf")) <= now:
            return self.finish(query_id, QueryStatus.TIMED_OUT, queue_timeout_error(
                now - float(raw["queued_since"])))
        if float(raw.get("deadline", "inf")) > now:
            return False
        return self.finish(query_id, QueryStatus.TIMED_OUT, ErrorInfo(
            code="deadline_exceeded", message="the query did not finish within its deadline"))


def queue_timeout_error(waited_s: float) -> ErrorInfo:
    return ErrorInfo(code="queue_timeout", message=f"no generation slot came free within "
                     f"{waited_s:.1f} s; the query was not sent to the engine")


def query_view(raw: Mapping[str, str]) -> dict[str, Any]:
    """Turn a stored hash into the API's query object."""
    timings: dict[str, float] = {}
    for stage in STAGES:
        if f"w_{stage}" in raw:
            timings[f"{stage}_queued"] = round(float(raw[f"w_{stage}"]), 2)
        if f"t_{stage}" in raw:
            timings[stage] = round(float(raw[f"t_{stage}"]), 2)
    end = float(raw.get("finished_at") or time.time())
    timings["total"] = round((end - float(raw["created_at"])) * 1000, 2)
    trust = json.loads(raw.get("trust") or "null")
    return {
        "id": raw["id"],
        "status": raw["status"],
        "question": raw["question"],
        "answer": raw.get("answer"),
        "citations": json.loads(raw.get("citations", "[]")),
        "timings_ms": timings,
        "usage": json.loads(raw.get("usage", '{"prompt_tokens":0,"completion_tokens":0}')),
        "error": json.loads(raw["error"]) if raw.get("error") else None,
        "created_at": float(raw["created_at"]),
        "finished_at": float(raw["finished_at"]) if raw.get("finished_at") else None,
        "trust_score": trust["score"] if trust else None,
        "low_trust": trust["low_trust"] if trust else None,
        "trust": trust,
        "feedback": json.loads(raw["feedback"]) if raw.get("feedback") else None,
    }


class DocumentRecords(Records):
    kind = "d"
    terminal = frozenset()  # a document may always be re-ingested

    def index_key(self, owner: str) -> str:
        return f"{PREFIX}:docs:{owner}"

    @staticmethod
    def doc_key(owner: str, document_id: str) -> str:
        return f"{owner}:{document_id}"

    def upsert(self, owner: str, document_id: str, source: str, collection: str,
               chars: int, metadata: Mapping[str, Any]) -> tuple[str, int, list[str]]:
        """(Re)start a document's ingestion.

        Returns its key, its generation (each ingestion bumps it, so a late job of an older
        ingestion can tell it is stale) and the collections the document leaves.
        """
        doc_key = self.doc_key(owner, document_id)
        previous = self.raw(doc_key)
        stale = [previous["collection"]] if previous.get("collection", collection) != collection \
            else []
        now = time.time()
        fields = {"document_id": document_id, "owner": owner, "status": DocumentStatus.QUEUED.value,
                  "source": source, "collection": collection, "chars": chars, "chunks": 0,
                  "metadata": dict(metadata), "error": "", "created_at": previous.get(
                      "created_at", now), "updated_at": now}
        with self.r.pipeline() as pipe:
            pipe.hset(self.key(doc_key), mapping=dict(zip(*[iter(_flatten(fields))] * 2,
                                                          strict=True)))
            pipe.hincrby(self.key(doc_key), "generation", 1)
            pipe.zadd(self.index_key(owner), {document_id: float(fields["created_at"])})
            generation = int(pipe.execute()[1])
        return doc_key, generation, stale

    def generation(self, doc_key: str) -> int | None:
        value = self.r.hget(self.key(doc_key), "generation")
        return int(value) if value is not None else None

    def get(self, owner: str, document_id: str) -> dict[str, Any] | None:
        raw = self.raw(self.doc_key(owner, document_id))
        return document_view(raw) if raw else None

    def list(self, owner: str, offset: int = 0,
             limit: int = 100) -> tuple[int, list[dict[str, Any]]]:
        ids = [i.decode() for i in self.r.zrange(self.index_key(owner), offset, offset + limit - 1)]
        total = int(self.r.zcard(self.index_key(owner)))
        with self.r.pipeline() as pipe:
            for document_id in ids:
                pipe.hgetall(self.key(self.doc_key(owner, document_id)))
            rows = pipe.execute()
        docs = [document_view({k.decode(): v.decode() for k, v in row.items()})
                for row in rows if row]
        return total, docs

    def remove(self, owner: str, document_id: str) -> dict[str, Any] | None:
        doc = self.get(owner, document_id)
        if doc is None:
            return None
        with self.r.pipeline() as pipe:
            pipe.delete(self.key(self.doc_key(owner, document_id)))
            pipe.zrem(self.index_key(owner), document_id)
            pipe.execute()
        return doc

    def collections_of(self, docs: Iterable[dict[str, Any]]) -> list[str]:
        return sorted({d["collection"] for d in docs})


def document_view(raw: Mapping[str, str]) -> dict[str, Any]:
    return {
        "id": raw["document_id"],
        "status": raw["status"],
        "source": raw["source"],
        "collection": raw["collection"],
        "chunks": int(raw.get("chunks") or 0),
        "chars": int(raw.get("chars") or 0),
        "metadata": json.loads(raw.get("metadata") or "{}"),
        "error": json.loads(raw["error"]) if raw.get("error") else None,
        "created_at": float(raw["created_at"]),
        "updated_at": float(raw["updated_at"]),
    }
