"""`python -m services.api.healthcheck`: this container's healthcheck, GET /healthz on the
API's own port (exit 0 healthy, 1 not; the image has no curl)."""

from __future__ import annotations

import urllib.error
import urllib.request

from shared.settings import Settings


def main() -> int:
    url = f"http://127.0.0.1:{Settings().api_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            healthy = response.status == 200
            detail = f"{url} answered {response.status}"
    except (urllib.error.URLError, OSError) as exc:
        healthy, detail = False, f"{url}: {exc}"
    print(f"api {'healthy' if healthy else 'unhealthy'}: {detail}", flush=True)
    return 0 if healthy else 1


if __name__ == "__main__":
    raise SystemExit(main())
