"""Query and document records in Redis: the state a client polls.

A record is a Redis hash. Status changes go through one Lua script that refuses to move a
record out of a terminal state, so a late worker can never overwrite `cancelled` or
`timed_out` with `succeeded`, and two workers can never both finish one query.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import redis

from shared.jobs import (
    TERMINAL_QUERY,
    DocumentStatus,
    ErrorInfo,
    QueryParams,
    QueryStatus,
)

PREFIX = "ragmesh"

# Returns -1 when the record is gone, 0 when it is in a refused state, 1 when updated.
_TRANSITION = """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return -1 end
for s in string.gmatch(ARGV[1], '[^,]+') do
  if s == cur then return 0 end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""

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

    def transition(self, record_id: str, status: str | None = None, **fields: Any) -> bool:
        """Update fields (and status) unless the record is terminal. True when applied."""
        if status is not None:
            fields["status"] = status
        fields["updated_at"] = time.time()
        refused = ",".join(sorted(self.terminal))
        result = self._transition(keys=[self.key(record_id)], args=[refused, *_flatten(fields)])
        return int(result) == 1

    def raw(self, record_id: str) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.r.hgetall(self.key(record_id)).items()}


class QueryRecords(Records):
    kind = "q"
    terminal = frozenset(str(s) for s in TERMINAL_QUERY)

    def create(self, owner: str, question: str, params: QueryParams, deadline: float) -> str:
        query_id = new_id()
        now = time.time()
        key = self.key(query_id)
        fields = {"id": query_id, "owner": owner, "status": QueryStatus.QUEUED.value,
                  "question": question, "params": params.model_dump(mode="json"),
                  "created_at": now, "updated_at": now, "deadline": now + deadline}
        with self.r.pipeline() as pipe:
            pipe.hset(key, mapping=dict(zip(*[iter(_flatten(fields))] * 2, strict=True)))
            pipe.expire(key, self.ttl)
            pipe.execute()
        return query_id

    def get(self, query_id: str, owner: str | None = None) -> dict[str, Any] | None:
        """The client-facing view, or None when missing or owned by someone else."""
        raw = self.raw(query_id)
        if not raw or (owner is not None and raw.get("owner") != owner):
            return None
        return query_view(raw)

    def status(self, query_id: str) -> str | None:
        value = self.r.hget(self.key(query_id), "status")
        return value.decode() if value else None

    def is_active(self, query_id: str) -> bool:
        status = self.status(query_id)
        return status is not None and status not in self.terminal

    def stage_started(self, query_id: str, stage: str, status: QueryStatus,
                      waited_s: float) -> bool:
        return self.transition(query_id, status.value, **{f"w_{stage}": waited_s * 1000})

    def stage_done(self, query_id: str, stage: str, took_s: float) -> bool:
        return self.transition(query_id, **{f"t_{stage}": took_s * 1000})

    def finish(self, query_id: str, status: QueryStatus, error: ErrorInfo | None = None,
               **fields: Any) -> bool:
        if error is not None:
            fields["error"] = error.model_dump()
        return self.transition(query_id, status.value, finished_at=time.time(), **fields)

    def expire_if_overdue(self, query_id: str, now: float | None = None) -> bool:
        """End a query that outlived its deadline (a lost job, a dead worker): never stuck."""
        raw = self.raw(query_id)
        if not raw or raw.get("status") in self.terminal:
            return False
        if float(raw.get("deadline", "inf")) > (now or time.time()):
            return False
        return self.finish(query_id, QueryStatus.TIMED_OUT, ErrorInfo(
            code="deadline_exceeded", message="the query did not finish within its deadline"))


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
