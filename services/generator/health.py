"""`python -m services.generator.health`: this container's healthcheck (exit 0 healthy, 1 not)."""

from shared.health import main

if __name__ == "__main__":
    raise SystemExit(main("generator"))
