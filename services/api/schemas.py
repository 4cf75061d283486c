"""Response bodies of the API, as models: the source of the OpenAPI document."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

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


class Trust(BaseModel):
    """How far to trust the answer; the formula and its reasons: services/generator/trust.py."""

    score: float = Field(ge=0, le=1, description="retrieval * support; 0 when abstained.")
    retrieval: float = Field(ge=0, le=1, description="Strength of the best passage the answer "
                             "rests on, from the score threshold (0) to trust_full_score (1).")
    support: float = Field(ge=0, le=1, description="Share of the answer's content words (numbers "
                           "weigh 2) found in the passages it cites (all, if it cites none).")
    abstained: bool = Field(description="The answer says the documents do not answer.")
    low_trust: bool = Field(description="score < threshold.")
    cited_scores: list[float] = Field(description="Scores of the passages the answer rests on.")
    threshold: float


class Feedback(BaseModel):
    rating: Literal["up", "down"]
    comment: str | None
    at: float = Field(description="When it was given (Unix time).")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rating: Literal["up", "down"]
    comment: str | None = Field(None, max_length=2000, description="What was wrong or right.")


class FeedbackGiven(BaseModel):
    id: str
    feedback: Feedback


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
    trust_score: float | None = Field(description="0-1, set when an answer is finished; see "
                                      "`trust`.")
    low_trust: bool | None = Field(description="The trust score is below the configured "
                                   "threshold: check the answer against its sources.")
    trust: Trust | None
    feedback: Feedback | None


class ReviewItem(BaseModel):
    id: str
    status: QueryStatus
    question: str
    answer: str | None
    collection: str | None
    citations: list[Citation]
    trust_score: float | None
    trust: Trust | None
    feedback: Feedback | None
    created_at: float
    reasons: list[Literal["low_trust", "rated_down"]]
    kept_at: float


class ReviewList(BaseModel):
    items: list[ReviewItem]
    total: int
    limit: int


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
