"""Every ragmesh metric, declared once, with base units and few bounded labels."""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Gauge, Histogram, start_http_server

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
                    60, 120, 300)

HTTP_REQUESTS = Counter("ragmesh_http_requests_total", "HTTP requests by route and status.",
                        ["method", "route", "status"])
HTTP_DURATION = Histogram("ragmesh_http_request_duration_seconds", "HTTP request latency.",
                          ["method", "route"], buckets=_LATENCY_BUCKETS)
JOBS = Counter("ragmesh_jobs_total", "Stage jobs by stage and outcome.", ["stage", "outcome"])
STAGE_DURATION = Histogram("ragmesh_stage_duration_seconds", "Time a stage worked on a job.",
                           ["stage"], buckets=_LATENCY_BUCKETS)
STAGE_QUEUED = Histogram("ragmesh_stage_queued_seconds", "Time a job waited in a stage queue.",
                         ["stage"], buckets=_LATENCY_BUCKETS)
REJECTED = Counter("ragmesh_rejected_total", "Requests the API refused to protect the "
                   "mesh: rate_limited, overloaded (429), unavailable (503: Redis "
                   "unreachable), not_persisted (503: Redis could not write an accepted "
                   "job to disk in time).", ["reason"])
# The embedder's dynamic batching: texts per encode call, questions and chunks of several
# jobs together (1 everywhere: nothing is batched, the lanes take turns at the model).
EMBED_BATCH_TEXTS = Histogram("ragmesh_embed_batch_texts", "Texts encoded together in one "
                              "call of the embedding model.",
                              buckets=(1, 2, 4, 8, 16, 24, 32, 48, 64, 128, 256))
QUEUE_DEPTH = Gauge("ragmesh_queue_depth", "Jobs waiting per queue.", ["queue"])
GENERATED_TOKENS = Counter("ragmesh_generated_tokens_total", "Completion tokens generated.")
PROMPT_TOKENS = Counter("ragmesh_prompt_tokens_total", "Prompt tokens sent to the engine.")
TIME_TO_FIRST_TOKEN = Histogram("ragmesh_time_to_first_token_seconds",
                                "From generation start to the first token.",
                                buckets=_LATENCY_BUCKETS)
QUERIES = Counter("ragmesh_queries_total", "Finished queries by outcome.", ["outcome"])
DOCUMENTS = Counter("ragmesh_documents_total", "Finished ingestions by outcome.", ["outcome"])
CHUNKS_INDEXED = Counter("ragmesh_chunks_indexed_total", "Chunks written to the vector store.")
# Set by the generator's concurrency cap: requests it has in flight against its engine, the
# cap, and the jobs that gave up waiting for a free slot.
GENERATOR_INFLIGHT = Gauge("ragmesh_generator_inflight", "Generations in flight on an engine, "
                           "all replicas together (every replica reports the same count).",
                           ["engine"])
GENERATOR_CAPACITY = Gauge("ragmesh_generator_capacity", "The engine's concurrency cap.",
                           ["engine"])
GENERATOR_QUEUE_TIMEOUTS = Counter("ragmesh_generator_queue_timeouts_total",
                                   "Generations that gave up waiting for a free slot.")
WORKER_INFO = Gauge("ragmesh_worker_info", "1 per running worker: its RQ name (service, "
                    "container host name, pid), to tell replicas apart.", ["service", "worker"])


def serve(port: int) -> WSGIServer:
    """Serve this process's metrics on `port` (all interfaces: the private network); returns
    the server, whose `shutdown()` stops it."""
    server, _thread = start_http_server(port)
    return server
ANSWER_TRUST = Histogram("ragmesh_answer_trust_ratio", "Trust score of finished answers "
                         "(0-1: retrieval strength and support by the cited text).",
                         buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0))
LOW_TRUST_ANSWERS = Counter("ragmesh_low_trust_answers_total",
                            "Answers below the trust threshold, abstentions included.")
ABSTAINED_ANSWERS = Counter("ragmesh_abstained_answers_total",
                            "Answers that said the documents do not answer the question.")
FEEDBACK = Counter("ragmesh_feedback_total", "Feedback on answers by rating.", ["rating"])
REVIEW_KEPT = Counter("ragmesh_review_kept_total", "Answers kept for review, by reason.",
                      ["reason"])
