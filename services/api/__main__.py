"""`python -m services.api`: serve the REST API."""

from __future__ import annotations

from aiohttp import web

from services.api.app import create_app
from shared.logging import get_logger, setup_logging
from shared.settings import Settings


def main() -> None:
    settings = Settings()
    setup_logging(settings.log_level, settings.log_json, service="api")
    get_logger("api").info("api_starting", host=settings.api_host, port=settings.api_port)
    web.run_app(create_app(settings), host=settings.api_host, port=settings.api_port,
                print=None, access_log=None, shutdown_timeout=10)


if __name__ == "__main__":
    main()
