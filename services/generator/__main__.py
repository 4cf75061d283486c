"""`python -m services.generator`: connect to the engines, then serve the generate queue with
as many lanes as the engines' caps allow."""

from __future__ import annotations

from services.generator import tasks
from services.generator.dispatch import EngineSlot
from services.generator.engine import OpenAIEngine
from services.generator.slots import EngineSlots
from services.generator.tokens import EngineTokens
from shared.jobs import Queues
from shared.logging import get_logger, setup_logging
from shared.queue import connect
from shared.settings import Settings
from shared.worker import run_worker


def build_pool(settings: Settings, connection: object) -> list[EngineSlot]:
    key = settings.generator_api_key.get_secret_value() if settings.generator_api_key else None
    return [EngineSlot(OpenAIEngine(url, settings.generator_model, key,
                                    extra_body=settings.generator_extra_body),
                       EngineSlots(connection, url, settings.generator_max_concurrency,  # type: ignore[arg-type]
                                   settings.generator_lease_seconds),
                       EngineTokens(url, settings.generator_model,
                                    settings.engine_max_model_len, key))
            for url in settings.engine_urls]


def main() -> None:
    settings = Settings()
    setup_logging(settings.log_level, settings.log_json, service="generator")
    connection = connect(settings)
    pool = build_pool(settings, connection)
    get_logger("generator").info("engines", urls=settings.engine_urls,
                                 model=settings.generator_model,
                                 cap=settings.generator_max_concurrency, lanes=settings.lanes)
    tasks.setup(tasks.Resources(settings=settings, connection=connection, pool=pool))

    def ready() -> tuple[bool, str]:
        states = [slot.engine.ready() for slot in pool]
        if any(ok for ok, _ in states):
            return True, "; ".join(detail for _, detail in states)
        return False, "; ".join(detail for _, detail in states)

    run_worker(settings, "generator", [Queues.GENERATE], ready, lanes=settings.lanes)


if __name__ == "__main__":
    main()
