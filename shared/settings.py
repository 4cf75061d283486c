"""The one typed settings object of ragmesh.

Every option lives here, once, with its documentation. Values come from (first wins):
keyword arguments (tests), environment variables `RAGMESH_*`, a `.env` file, the YAML
file named by `RAGMESH_CONFIG`, then the defaults below.

The YAML file declares components the way Kotaemon users know, one section per
component; a key `foo` in section `bar` sets the option `bar_foo`:

    embedding:   {model: all-MiniLM-L6-v2, device: cpu, batch_size: 32}
    vectorstore: {uri: ./.ragmesh/milvus.db, collection: handbook}
    generator:   {engine_url: http://127.0.0.1:8001/v1, model: smollm2-135m-instruct}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

# Sections of the YAML file; each maps onto the options that start with its name.
YAML_SECTIONS = ("api", "redis", "embedding", "vectorstore", "retrieval", "generator", "ingest",
                 "query", "engine", "log", "trust", "review")


class YamlSectionsSource(PydanticBaseSettingsSource):
    """Reads `RAGMESH_CONFIG` (YAML) and flattens `{section: {key: v}}` to `section_key`."""

    def __init__(self, settings_cls: type[BaseSettings], path: str | None) -> None:
        super().__init__(settings_cls)
        self._data = self._load(path) if path else {}

    @staticmethod
    def _load(path: str) -> dict[str, Any]:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: the top level must be a mapping of sections")
        flat: dict[str, Any] = {}
        for key, value in raw.items():
            if key in YAML_SECTIONS and isinstance(value, dict):
                flat.update({f"{key}_{sub}": v for sub, v in value.items()})
            else:
                flat[key] = value
        return flat

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        unknown = set(self._data) - set(self.settings_cls.model_fields)
        if unknown:
            raise ValueError(f"unknown options in RAGMESH_CONFIG: {', '.join(sorted(unknown))}")
        return dict(self._data)


class Settings(BaseSettings):
    """All of ragmesh's options. Environment variable = `RAGMESH_` + upper-case name."""

    model_config = SettingsConfigDict(
        env_prefix="RAGMESH_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- state and logging
    state_dir: Path = Field(Path(".ragmesh"), description="Folder for the embedded default's "
                            "data: Valkey AOF, Milvus Lite file, converted model, generated key.")
    log_level: str = Field("INFO", description="Log level of every service.")
    log_json: bool = Field(True, description="JSON lines on stdout (false: coloured console).")

    # --- api
    api_host: str = Field("127.0.0.1", description="Address the API binds to.")
    api_port: int = Field(8080, ge=0, le=65535, description="Port the API binds to.")
    api_url: str = Field("", description="Where the CLI finds the API; default "
                         "http://{api_host}:{api_port}.")
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Accepted API keys, comma-separated. `ragmesh up` "
        "generates one into the state folder when empty.")
    api_key: SecretStr | None = Field(None, description="The key the CLI sends (default: the "
                                      "first of api_keys, else the generated one).")
    api_max_body_bytes: int = Field(20 * 1024 * 1024, gt=0, description="Largest request body "
                                    "(a document upload); a query's body is held to 64 KiB.")
    api_max_queue_depth: int = Field(1000, ge=0, description="Jobs waiting in the stage queues "
                                     "(and for a generation slot) past which POST /v1/queries "
                                     "and POST /v1/documents answer 429 overloaded with "
                                     "Retry-After; 0: no limit.")
    api_rate_limit: float = Field(50.0, ge=0, description="Requests per second each API key may "
                                  "make on average (a token bucket in Redis, shared by every API "
                                  "replica); past it 429 rate_limited with Retry-After. 0: no "
                                  "limit.")
    api_rate_burst: int = Field(200, ge=1, description="Requests one key may make at once "
                                "before api_rate_limit applies (the bucket's size).")
    api_idempotency_ttl: int = Field(24 * 3600, ge=60, description="Seconds an Idempotency-Key "
                                     "is remembered: a POST retried with the same key within "
                                     "it returns the first request's job.")
    api_redis_timeout: float = Field(3.0, gt=0, description="Seconds the API waits for Redis to "
                                     "connect or answer before it gives up with 503 and "
                                     "Retry-After.")
    api_durable_accept: bool = Field(True, description="Answer 202 only once Redis has the "
                                     "new job in its append-only file on disk (WAITAOF), so a "
                                     "Redis crash cannot lose an accepted query or document; "
                                     "else 503. Nothing to wait for when Redis keeps no AOF. "
                                     "It holds against a machine crash only with appendfsync "
                                     "always: under everysec WAITAOF does not wait for an fsync "
                                     "(docs/faults.md).")

    # --- redis
    redis_url: SecretStr = Field(SecretStr("redis://127.0.0.1:6379/0"), description="Redis or "
                                 "Valkey URL, password included (redis://:PASSWORD@host:port/0).")
    redis_appendfsync: Literal["always", "everysec", "no"] = Field(
        "always", description="When the Valkey that `ragmesh up` starts writes its "
        "append-only file to disk: always (every write it acknowledged survives a crash; "
        "docs/faults.md measures the cost), everysec (a machine crash loses up to a second of "
        "writes, accepted jobs included) or no.")

    # --- embedding
    embedding_model: str = Field("all-MiniLM-L6-v2", description="sentence-transformers model: "
                                 "a path, a hub name, or all-MiniLM-L6-v2 for the bundled copy.")
    embedding_device: str = Field("cpu", description="torch device for the embedder.")
    embedding_threads: int = Field(0, ge=0, le=256, description="torch threads of the embedder "
                                   "(0: the cores it may use, within its container's CPU quota, "
                                   "but one, which the lanes' queue work needs; at least 1). "
                                   "`ragmesh up` leaves the core its local engine is "
                                   "pinned to.")
    embedding_trace: bool = Field(True, description="Run the model's transformer as a "
                                  "TorchScript graph, checked against the model at start (on "
                                  "any difference the model runs as it is): the graph runs "
                                  "without Python's interpreter lock, which the lanes' queue "
                                  "work needs too.")
    embedding_batch_size: int = Field(32, ge=1, le=1024, description="Most texts in one encode "
                                      "call: questions and chunks of the jobs that wait are "
                                      "encoded together up to this; a larger document goes in "
                                      "pieces, questions in between.")
    embedding_batch_chars: int = Field(4000, ge=1, description="Most characters in one encode "
                                       "call, so a question waits behind a short piece of a "
                                       "document; a single longer text still goes, alone. On "
                                       "CPU a dozen 300-character chunks already encode at full "
                                       "speed.")
    embedding_lanes: int = Field(32, ge=1, le=256, description="Embedding jobs one embedder "
                                 "process takes at once (RQ workers in threads): their texts "
                                 "share encode calls. 1: one job at a time, nothing batched "
                                 "across jobs.")

    # --- vector store
    vectorstore_uri: str = Field("", description="Milvus URI (http://host:19530) or a Milvus Lite "
                                 "file (*.db). Empty: {state_dir}/milvus.db.")
    vectorstore_token: SecretStr | None = Field(None, description="Milvus token (user:password).")
    vectorstore_retry_seconds: float = Field(30.0, ge=0, description="How long the retriever "
                                             "keeps trying while the vector store is "
                                             "unreachable (a restart) before the query or "
                                             "document fails vectorstore_unavailable.")
    vectorstore_collection: str = Field("handbook", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$",
                                        description="Default collection.")
    vectorstore_index_type: str = Field("HNSW", description="Vector index of a new collection "
                                        "(Milvus and Milvus Lite: HNSW, IVF_FLAT, FLAT, "
                                        "AUTOINDEX). A collection keeps the index it was "
                                        "created with.")
    vectorstore_index_params: dict[str, Any] = Field(
        default_factory=lambda: {"M": 16, "efConstruction": 200}, description="Build "
        "parameters of that index (HNSW: M, efConstruction; IVF_FLAT: nlist). See \"Vector "
        "index\" below.")
    vectorstore_search_params: dict[str, Any] = Field(
        default_factory=lambda: {"ef": 128}, description="Search parameters (HNSW: ef, "
        "raised to top_k when smaller; IVF_FLAT: nprobe). See \"Vector index\" below.")

    # --- retrieval
    retrieval_top_k: int = Field(6, ge=1, le=50, description="Chunks retrieved per question.")
    retrieval_max_top_k: int = Field(20, ge=1, le=100,
                                     description="Largest top_k a client may ask.")
    retrieval_score_threshold: float = Field(0.40, ge=-1, le=1, description="Cosine similarity "
                                             "below which a chunk counts as not relevant (no "
                                             "relevant chunk: the answer says so).")

    # --- ingestion
    ingest_chunk_size: int = Field(300, ge=100, le=8000, description="Characters per chunk. "
                                   "Small chunks suit MiniLM and a small model; raise it (and "
                                   "top_k) for a large model (docs/evaluation.md).")
    ingest_chunk_overlap: int = Field(120, ge=0, le=2000, description="Characters shared by "
                                      "neighbouring chunks.")
    ingest_max_document_chars: int = Field(2_000_000, gt=0, description="Largest extracted text.")

    # --- generator / engine
    generator_engine_url: str = Field("http://127.0.0.1:8001/v1", description="OpenAI-compatible "
                                      "base URL of the engine (ends in /v1); several engines: "
                                      "comma-separated, each with its own concurrency cap.")
    generator_engine_mode: Literal["auto", "local", "remote"] = Field(
        "auto", description="local: `ragmesh up` starts a vLLM engine; remote: use "
        "generator_engine_url as it is; auto: remote when generator_engine_url is set, else local.")
    generator_max_concurrency: int = Field(4, ge=1, le=1024, description="Generations in flight "
                                           "per engine, across all generator workers and "
                                           "replicas together.")
    generator_queue_timeout: float = Field(30.0, gt=0, description="Seconds a query may wait for "
                                           "a generation slot; then it ends timed_out "
                                           "(queue_timeout) without reaching the engine.")
    generator_lanes: int = Field(0, ge=0, le=256, description="Generations one generator process "
                                 "runs at once; 0: the cap times the number of engines.")
    generator_lease_seconds: float = Field(15.0, ge=2, description="Lease of a generation slot; a "
                                           "worker that dies holding one loses it after this.")
    generator_retries: int = Field(3, ge=0, le=10, description="Tries again this many times, with "
                                   "backoff, while the engine is unreachable; then "
                                   "engine_unavailable.")
    generator_retry_backoff: float = Field(1.0, ge=0, description="First backoff in seconds; it "
                                           "doubles on each retry.")
    generator_api_key: SecretStr | None = Field(None, description="Bearer key for the engine.")
    generator_model: str = Field("smollm2-135m-instruct", description="Model name sent to the "
                                 "engine (vLLM's --served-model-name).")
    generator_extra_body: dict[str, Any] = Field(default_factory=dict, description="Extra JSON "
                                                 "fields for each engine request, e.g. vLLM's "
                                                 '{"repetition_penalty": 1.1}.')
    generator_max_tokens: int = Field(128, ge=1, le=4096, description="Default answer length "
                                      "in tokens (the prompt asks for one to three sentences).")
    generator_temperature: float = Field(0.0, ge=0, le=2, description="Default temperature.")
    generator_timeout: float = Field(120.0, gt=0, description="Seconds one generation may take.")
    generator_stream_flush_ms: float = Field(20.0, ge=0, le=1000, description="The answer's "
                                             "first piece reaches the event stream at once; "
                                             "later pieces that arrive within this many ms of "
                                             "the last write go out together, in one write "
                                             "(0: one write per piece).")
    generator_max_context_tokens: int = Field(1500, ge=100, description="Most tokens of "
                                              "passages put in a prompt, counted by the "
                                              "engine's tokenizer; fewer when the engine's "
                                              "context, less the answer and the question, "
                                              "leaves less.")

    engine_model_path: str = Field("", description="Model `ragmesh up` serves with its local "
                                   "vLLM engine; empty: SmolLM2 converted into the state folder.")
    engine_port: int = Field(8001, ge=0, le=65535, description="Port of the local engine.")
    engine_start_timeout: float = Field(600.0, gt=0, description="Seconds to wait for the local "
                                        "engine to load.")
    engine_max_model_len: int = Field(2048, ge=256, description="Context length of the local "
                                      "engine; for any engine, what the generator assumes "
                                      "until the engine tells its own (vLLM's /tokenize).")

    # --- query lifecycle
    query_max_question_chars: int = Field(4000, ge=1, description="Longest question accepted.")
    query_deadline: float = Field(600.0, gt=0, description="Seconds after which an unfinished "
                                  "query ends timed_out, whatever its stage.")
    query_result_ttl: int = Field(7 * 24 * 3600, gt=0, description="Seconds a succeeded "
                                  "query's record (answer, citations) is kept after it ends; "
                                  "then its owner gets 404 query_expired.")
    query_failed_ttl: int = Field(7 * 24 * 3600, gt=0, description="Seconds a query that ended "
                                  "failed, timed_out or cancelled is kept, with its error, for "
                                  "inspection; then its owner gets 404 query_expired.")
    query_tombstone_ttl: int = Field(7 * 24 * 3600, ge=0, description="Seconds after a query's "
                                     "record is gone during which its owner still gets 404 "
                                     "query_expired (anyone else: query_not_found).")
    stage_timeout: int = Field(300, gt=0, description="RQ job timeout of one stage, seconds.")

    # --- answer trust and the review loop
    trust_threshold: float = Field(0.25, ge=0, le=1, description="Answers whose trust score "
                                   "(0-1, see services/generator/trust.py) is below this are "
                                   "flagged `low_trust` and kept for review.")
    trust_full_score: float = Field(0.6, gt=0, le=1, description="Cosine similarity at which "
                                    "the best passage an answer rests on counts as full "
                                    "retrieval strength (the retrieval score threshold counts "
                                    "as none).")
    review_ttl: int = Field(30 * 24 * 3600, gt=0, description="Seconds a low-trust or "
                            "rated-down answer is kept for `ragmesh eval export-review`.")
    review_max_items: int = Field(10_000, ge=1, description="Most answers kept for review per "
                                  "API key; the oldest go first.")

    # --- workers
    worker_name: str = Field("", description="Worker name (default: host + pid).")
    worker_heartbeat: int = Field(5, ge=1, description="Seconds between health heartbeats.")
    worker_redis_retry_seconds: float = Field(30.0, ge=0, description="How long a worker "
                                              "keeps retrying a Redis command while Redis is "
                                              "unreachable (a restart) before the job in hand "
                                              "fails (it is then run again or ended with a "
                                              "code).")

    # --- observability
    metrics_port: int = Field(0, ge=0, le=65535, description="Port of an unauthenticated "
                              "Prometheus /metrics listener in each worker and the API, for a "
                              "private network (0: none; containers use 9100). The API's "
                              "/metrics on its public port keeps needing a key.")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("ingest_chunk_overlap")
    @classmethod
    def _overlap_below_size(cls, value: int, info: Any) -> int:
        size = info.data.get("ingest_chunk_size", 300)
        if value >= size:
            raise ValueError("ingest_chunk_overlap must be smaller than ingest_chunk_size")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_source = YamlSectionsSource(settings_cls, os.environ.get("RAGMESH_CONFIG"))
        return init_settings, env_settings, dotenv_settings, yaml_source

    # --- derived values
    @property
    def milvus_uri(self) -> str:
        return self.vectorstore_uri or str(self.state_dir / "milvus.db")

    @property
    def cli_api_url(self) -> str:
        return (self.api_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def engine_urls(self) -> list[str]:
        return [u.strip().rstrip("/") for u in self.generator_engine_url.split(",") if u.strip()]

    @property
    def engine_is_local(self) -> bool:
        """Whether `ragmesh up` starts the engine itself."""
        if self.generator_engine_mode == "auto":
            return "generator_engine_url" not in self.model_fields_set
        return self.generator_engine_mode == "local"

    @property
    def generate_job_timeout(self) -> int:
        """RQ's limit for one generate job: the slot wait, one generation, the retries (only
        tries that never reached the engine are retried: a connect timeout each, plus
        backoff), and a margin."""
        backoff = self.generator_retry_backoff * (2 ** self.generator_retries - 1)
        retries = self.generator_retries * 5 + backoff  # 5 s: the engine client's connect timeout
        return int(self.generator_queue_timeout + self.generator_timeout + retries + 60)

    @property
    def lanes(self) -> int:
        return self.generator_lanes or self.generator_max_concurrency * len(self.engine_urls)


def documented_options() -> list[tuple[str, str, str]]:
    """(environment variable, default, description) for every option: the docs' source."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
        if isinstance(default, SecretStr):
            default = "(secret)"
        rows.append((f"RAGMESH_{name.upper()}", repr(default), field.description or ""))
    return rows


def options_markdown() -> str:
    """docs/configuration.md's table, generated from the fields above (a test keeps it fresh)."""
    lines = ["| Environment variable | Default | Meaning |", "| --- | --- | --- |"]
    for env, default, text in documented_options():
        lines.append(f"| `{env}` | `{default}` | {text} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(options_markdown(), end="")
