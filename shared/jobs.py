"""Job schemas: queue names, task paths and the payloads that cross Redis, defined once.

The API validates a request into one of these models and enqueues `model_dump(mode="json")`;
each worker's first line validates it back. Tasks are enqueued by dotted path so the API
never imports torch or pymilvus.
"""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum
from typing import Annotated, Any

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
)


class Queues(StrEnum):
    EMBED = "ragmesh-embed"
    RETRIEVE = "ragmesh-retrieve"
    GENERATE = "ragmesh-generate"


class Tasks(StrEnum):
    EMBED_QUERY = "services.embedder.tasks.embed_query"
    EMBED_DOCUMENT = "services.embedder.tasks.embed_document"
    RETRIEVE = "services.retriever.tasks.retrieve"
    INDEX_DOCUMENT = "services.retriever.tasks.index_document"
    DELETE_DOCUMENT = "services.retriever.tasks.delete_document"
    GENERATE = "services.generator.tasks.generate"


TASK_QUEUE: dict[Tasks, Queues] = {
    Tasks.EMBED_QUERY: Queues.EMBED,
    Tasks.EMBED_DOCUMENT: Queues.EMBED,
    Tasks.RETRIEVE: Queues.RETRIEVE,
    Tasks.INDEX_DOCUMENT: Queues.RETRIEVE,
    Tasks.DELETE_DOCUMENT: Queues.RETRIEVE,
    Tasks.GENERATE: Queues.GENERATE,
}


class QueryStatus(StrEnum):
    QUEUED = "queued"
    EMBEDDING = "embedding"
    RETRIEVING = "retrieving"
    GENERATING = "generating"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


class DocumentStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    INDEXED = "indexed"
    FAILED = "failed"


TERMINAL_QUERY = frozenset({QueryStatus.SUCCEEDED, QueryStatus.FAILED, QueryStatus.TIMED_OUT,
                            QueryStatus.CANCELLED})
TERMINAL_DOCUMENT = frozenset({DocumentStatus.INDEXED, DocumentStatus.FAILED})

COLLECTION_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,254}$"
DOCUMENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
QUERY_ID_PATTERN = r"^[0-9a-f]{32}$"
NO_NUL_PATTERN = r"^[^\x00]*$"  # NUL ends C strings downstream (Milvus, logs): refused

# Metadata travels with every chunk into the vector store: small scalars only. Integers stay
# within what a JSON double holds exactly, so every reader sees the same number.
_MetaKey = Annotated[str, StringConstraints(min_length=1, max_length=64,
                                            pattern=NO_NUL_PATTERN)]
_MetaValue = (Annotated[str, StringConstraints(max_length=1024, pattern=NO_NUL_PATTERN)]
              | Annotated[int, Field(ge=-(2**53), le=2**53)] | float | bool)


def _metadata_schema(schema: dict[str, Any]) -> None:
    """pydantic puts a key pattern under patternProperties, which lets other keys through
    unchecked; JSON Schema says it with propertyNames."""
    for branch in schema.get("anyOf", [schema]):
        patterns = branch.pop("patternProperties", None)
        if patterns:
            (pattern, values), = patterns.items()
            branch["additionalProperties"] = values
            branch.setdefault("propertyNames", {})["pattern"] = pattern


def _whole_number(value: Any) -> Any:
    # JSON has one kind of number: 5.0 is the integer 5, as JSON Schema's "integer" says.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Integers that take JSON's 5.0 for 5; the bounds go before the validator, or pydantic leaves
# them out of the JSON schema.
_TopK = Annotated[int, Field(ge=1), BeforeValidator(_whole_number)]
_MaxTokens = Annotated[int, Field(ge=1, le=4096), BeforeValidator(_whole_number)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- what clients send (validated by the API) -------------------------------------------------

class _Request(_Strict):
    # Strict types: "5" is not a top_k, as the OpenAPI document says (JSON numbers only).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class QueryRequest(_Request):
    question: str = Field(min_length=1, description="The question, in plain text.")
    top_k: _TopK | None = Field(None, description="Chunks to retrieve.")
    collection: str | None = Field(None, pattern=COLLECTION_PATTERN)
    max_tokens: _MaxTokens | None = None
    temperature: float | None = Field(None, ge=0, le=2)


class DocumentRequest(_Request):
    text: str = Field(min_length=1, description="The document's text.")
    source: str = Field(min_length=1, max_length=512, pattern=NO_NUL_PATTERN,
                        description="File name or URL shown in citations.")
    document_id: str | None = Field(None, pattern=DOCUMENT_ID_PATTERN)
    collection: str | None = Field(None, pattern=COLLECTION_PATTERN)
    metadata: dict[_MetaKey, _MetaValue] | None = Field(None, max_length=32,
                                                        json_schema_extra=_metadata_schema)


# --- what crosses the queues ------------------------------------------------------------------

class QueryParams(_Strict):
    top_k: int
    collection: str
    max_tokens: int
    temperature: float


def _vector_from(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ValueError("a vector is a list of floats or base64 of little-endian float32") \
            from exc
    if len(raw) % 4:
        raise ValueError("a base64 vector's length must be a multiple of 4 bytes")
    return np.frombuffer(raw, dtype="<f4").tolist()


def _vector_to(value: list[float]) -> str:
    return base64.b64encode(np.asarray(value, dtype="<f4").tobytes()).decode()


# An embedding crosses Redis as base64 of its float32 values (what the model computes and the
# vector store keeps): a 384-float vector in JSON text makes RQ spend ~2 ms to compress a job,
# its base64 ~0.1 ms.
Vector = Annotated[list[float], BeforeValidator(_vector_from),
                   PlainSerializer(_vector_to, return_type=str, when_used="json")]


class EmbedQueryJob(_Strict):
    query_id: str
    question: str
    params: QueryParams
    # Work time of the stages before, in ms: the next stage writes them on the record as it
    # starts, so that finishing a stage costs no round trip to Redis of its own.
    timings_ms: dict[str, float] = {}


class RetrieveJob(EmbedQueryJob):
    vector: Vector


class Chunk(_Strict):
    """One retrieved passage: what the generator cites."""

    document_id: str
    chunk_id: str
    source: str
    text: str
    score: float


class GenerateJob(EmbedQueryJob):
    chunks: list[Chunk]
    # When the query's wait for a generation slot ends (epoch seconds; 0: the generator's
    # queue timeout from when it takes the job).
    queue_deadline: float = 0.0


class EmbedDocumentJob(_Strict):
    doc_key: str
    generation: int
    document_id: str
    owner: str
    source: str
    collection: str
    text: str
    metadata: dict[str, Any] = {}
    stale_collections: list[str] = []


class IndexedChunk(_Strict):
    chunk_id: str
    text: str
    vector: Vector


class IndexDocumentJob(_Strict):
    doc_key: str
    generation: int
    document_id: str
    owner: str
    source: str
    collection: str
    chunks: list[IndexedChunk]
    stale_collections: list[str] = []


class DeleteDocumentJob(_Strict):
    doc_key: str
    collections: list[str]


class ErrorInfo(_Strict):
    code: str
    message: str
