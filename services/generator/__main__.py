"""`python -m services.generator`: connect to the engine once, then serve the generate queue."""

from __future__ import annotations

from services.generator import tasks
from services.generator.engine import OpenAIEngine
from shared.jobs import Queues
from shared.logging import get_logger, setup_logging
from shared.queue import connect
from shared.settings import Settings
from shared.worker import run_worker


def main() -> None:
    settings = Settings()
    setup_logging(settings.log_level, settings.log_json, service="generator")
    key = settings.generator_api_key.get_secret_value() if settings.generator_api_key else None
    engine = OpenAIEngine(settings.generator_engine_url, settings.generator_model, key)
    get_logger("generator").info("engine", url=settings.generator_engine_url,
                                 model=settings.generator_model)
    tasks.setup(tasks.Resources(settings=settings, connection=connect(settings), engine=engine))
    run_worker(settings, "generator", [Queues.GENERATE], engine.ready)


if __name__ == "__main__":
    main()
