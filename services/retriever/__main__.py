"""`python -m services.retriever`: connect to Milvus once, then serve the retrieve queue."""

from __future__ import annotations

from services.retriever import tasks
from services.retriever.store import Index, MilvusStore
from shared.jobs import Queues
from shared.logging import get_logger, setup_logging
from shared.queue import connect
from shared.settings import Settings
from shared.worker import run_worker


def main() -> None:
    settings = Settings()
    setup_logging(settings.log_level, settings.log_json, service="retriever")
    get_logger("retriever").info("connecting_vector_store", uri=settings.milvus_uri)
    token = settings.vectorstore_token.get_secret_value() if settings.vectorstore_token else None
    store = MilvusStore(settings.milvus_uri, token, Index.from_settings(settings),
                        retry_s=settings.vectorstore_retry_seconds)
    tasks.setup(tasks.Resources(settings=settings, connection=connect(settings), store=store))

    def ready() -> tuple[bool, str]:
        store.ping()
        return True, "vector store reachable"

    run_worker(settings, "retriever", [Queues.RETRIEVE], ready)


if __name__ == "__main__":
    main()
