"""A small synchronous client of the ragmesh REST API (used by the CLI and the tests)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx

TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}
INDEXED_OR_FAILED = {"indexed", "failed"}


RETRIES = 5


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait before trying again, when the API asks for it (overload, outage)."""
    if response.status_code not in (429, 503):
        return None
    try:
        return min(30.0, max(0.5, float(response.headers.get("Retry-After", "1"))))
    except ValueError:
        return 1.0


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        super().__init__(f"{status} {error.get('code', '')}: {error.get('message', body)}")
        self.status, self.body = status, body


class Client:
    def __init__(self, base_url: str, api_key: str, timeout: float = 60.0) -> None:
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout,
                                 headers={"Authorization": f"Bearer {api_key}"})

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One call; while the API says 429 or 503 it is tried again after its Retry-After
        (a few times), and a POST carries one Idempotency-Key through its retries, so a retry
        never creates a second job."""
        if method == "POST":
            kwargs["headers"] = {"Idempotency-Key": uuid.uuid4().hex, **kwargs.get("headers", {})}
        for attempt in range(RETRIES + 1):
            response = self.http.request(method, path, **kwargs)
            wait = _retry_after(response)
            if wait is None or attempt == RETRIES:
                break
            time.sleep(wait)
        body = response.json() if response.content else None
        if response.status_code >= 400:
            raise ApiError(response.status_code, body)
        return body

    # --- queries
    def submit(self, question: str, **params: Any) -> str:
        return self._call("POST", "/v1/queries", json={"question": question, **params})["id"]

    def query(self, query_id: str, wait: int = 0) -> dict[str, Any]:
        return self._call("GET", f"/v1/queries/{query_id}", params={"wait": wait} if wait
                          else None)

    def wait_query(self, query_id: str, timeout: float = 600.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            view = self.query(query_id, wait=min(30, max(1, int(deadline - time.monotonic()))))
            if view["status"] in TERMINAL or time.monotonic() > deadline:
                return view

    def ask(self, question: str, timeout: float = 600.0, **params: Any) -> dict[str, Any]:
        return self.wait_query(self.submit(question, **params), timeout)

    def feedback(self, query_id: str, rating: str, comment: str | None = None) -> dict[str, Any]:
        body = {"rating": rating, **({"comment": comment} if comment else {})}
        return self._call("POST", f"/v1/queries/{query_id}/feedback", json=body)

    def review(self, limit: int = 1000) -> dict[str, Any]:
        return self._call("GET", "/v1/review", params={"limit": limit})

    def ready(self) -> tuple[bool, str]:
        """Whether the mesh can answer, and why not."""
        try:
            response = self.http.get("/readyz")
        except httpx.HTTPError as exc:
            return False, f"{type(exc).__name__}: {exc}"
        body = response.json() if response.content else {}
        return response.status_code == 200, (body.get("error") or {}).get("message", "")

    # --- documents
    def upload(self, path: Path, collection: str | None = None,
               document_id: str | None = None) -> dict[str, Any]:
        data = {k: v for k, v in {"collection": collection, "document_id": document_id}.items()
                if v}
        with path.open("rb") as fh:
            # Bytes, not the handle: a retry sends the file again from its start.
            return self._call("POST", "/v1/documents", files={"file": (path.name, fh.read())},
                              data=data)

    def add_text(self, text: str, source: str, **fields: Any) -> dict[str, Any]:
        return self._call("POST", "/v1/documents", json={"text": text, "source": source,
                                                         **fields})

    def document(self, document_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/documents/{document_id}")

    def wait_documents(self, ids: list[str], timeout: float = 600.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        pending, done = list(ids), {}
        while pending and time.monotonic() < deadline:
            for document_id in list(pending):
                doc = self.document(document_id)
                if doc["status"] in INDEXED_OR_FAILED:
                    done[document_id] = doc
                    pending.remove(document_id)
            if pending:
                time.sleep(0.3)
        return [done.get(i) or self.document(i) for i in ids]
