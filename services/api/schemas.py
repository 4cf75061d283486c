"""Response bodies of the API, as models: the source of the OpenAPI document."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from shared.jobs import DocumentStatus, QueryStatus


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: list[dict[str, str]] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class QueryAccepted(BaseModel):
    id: str
    status: QueryStatus


class Citation(BaseModel):
    index: int = Field(description="The n of [n] in the answer.")
    document_id: str
    chunk_id: str
    source: str
    score: float
    text: str
    cited: bool = Field(description="Whether the answer refers to this passage explicitly.")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class QueryError(BaseModel):
    code: str
    message: str


class QueryView(BaseModel):
    id: str
    status: QueryStatus
    question: str
    answer: str | None
    citations: list[Citation]
    timings_ms: dict[str, float] = Field(description="Per stage: embed, retrieve, generate "
                                         "(work) and <stage>_queued (wait), and total.")
    usage: Usage
    error: QueryError | None
    created_at: float
    finished_at: float | None


class DocumentAccepted(BaseModel):
    id: str
    status: Literal["queued"]
    source: str
    collection: str


class DocumentView(BaseModel):
    id: str
    status: DocumentStatus
    source: str
    collection: str
    chunks: int
    chars: int
    metadata: dict[str, str | int | float | bool]
    error: QueryError | None
    created_at: float
    updated_at: float


class DocumentList(BaseModel):
    documents: list[DocumentView]
    total: int
    offset: int
    limit: int


class DocumentDeleted(BaseModel):
    id: str
    status: Literal["deleted"]


class Alive(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str] = Field(description="redis, and each stage's workers.")
    error: ErrorDetail | None = None
