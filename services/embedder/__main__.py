"""`python -m services.embedder`: load the model once, then serve the embed queue with
`embedding_lanes` lanes whose texts are encoded together (services/embedder/batching.py)."""

from __future__ import annotations

from services.embedder import core, tasks
from services.embedder.batching import BatchingEncoder
from shared.jobs import Queues
from shared.logging import get_logger, setup_logging
from shared.queue import connect
from shared.settings import Settings
from shared.worker import run_worker


def main() -> None:
    settings = Settings()
    setup_logging(settings.log_level, settings.log_json, service="embedder")
    log = get_logger("embedder")
    log.info("loading_model", model=settings.embedding_model, device=settings.embedding_device)
    encoder = core.load_encoder(settings.embedding_model, settings.embedding_device,
                                settings.embedding_threads)
    if settings.embedding_trace:
        log.info("tracing_model", outcome=core.trace_transformer(encoder))
    batching = BatchingEncoder(encoder, max_batch=settings.embedding_batch_size,
                               max_chars=settings.embedding_batch_chars)
    tasks.setup(tasks.Resources(settings=settings, connection=connect(settings),
                                encoder=batching))

    def ready() -> tuple[bool, str]:
        return True, f"model {settings.embedding_model} loaded"

    run_worker(settings, "embedder", [Queues.EMBED], ready, lanes=settings.embedding_lanes)


if __name__ == "__main__":
    main()
