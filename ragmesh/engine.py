"""Start and wait for a local vLLM OpenAI-compatible server on a CPU machine.

These helpers only build the command line and environment and poll the
server; starting the process (``subprocess.Popen``) is left to the caller, so
the CLI, test fixtures and supervisors can each manage its lifetime.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ragmesh.procs import log_tail

# vLLM's default (no VLLM_CPU_KVCACHE_SPACE) sizes the KV cache from free
# memory, which is greedy on a machine shared with the rest of the mesh.
DEFAULT_KV_CACHE_GIB = 1


def vllm_server_command(
    model: str,
    *,
    host: str,
    port: int,
    served_model_name: str,
    max_model_len: int = 2048,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """Return the argv that starts vLLM's OpenAI-compatible server.

    The server is started as ``python -m vllm.entrypoints.openai.api_server``
    because the ``vllm`` console script does not work with vllm-cpu here.

    Args:
        model: a local checkpoint directory (or a hub id, if online).
        host: interface to bind, e.g. ``"127.0.0.1"``.
        port: TCP port to listen on.
        served_model_name: the ``model`` name clients send in requests.
        max_model_len: context length; it bounds the KV cache one sequence
            may need, so keep it small on CPU.
        extra_args: appended last; vLLM takes the last value of a repeated
            option, so these override the defaults (``--dtype float32``,
            ``--no-enforce-eager``, ``--enable-log-requests``, ...).
    """
    return [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model),
        "--served-model-name",
        served_model_name,
        "--host",
        host,
        "--port",
        str(port),
        "--max-model-len",
        str(max_model_len),
        # What our checkpoints hold; vllm-cpu runs it natively on AVX-512 BF16
        # and ~45% faster than float32 with the same answers.
        "--dtype",
        "bfloat16",
        # torch.compile would add ~45 s to every cold start on 2 cores for
        # ~10% faster decoding of a 135M model: not worth it.
        "--enforce-eager",
        # Health polls and metric scrapes would otherwise flood the log.
        "--disable-uvicorn-access-log",
        *extra_args,
    ]


def vllm_server_env(
    base: Mapping[str, str], kv_cache_gib: int = DEFAULT_KV_CACHE_GIB
) -> dict[str, str]:
    """Return the environment to run :func:`vllm_server_command` with.

    Args:
        base: the environment to start from, usually ``os.environ``.
        kv_cache_gib: KV cache size in whole GiB (``VLLM_CPU_KVCACHE_SPACE``).
            1 GiB holds ~46k tokens of SmolLM2-135M, ~1M of the tiny model.
    """
    if kv_cache_gib < 1:
        # 0 or unset means "size it from free memory", which grabs most of it.
        raise ValueError(f"kv_cache_gib must be at least 1, not {kv_cache_gib}")
    env = dict(base)
    env.update(
        {
            # Checkpoints are local; never reach for a model hub.
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib),
        }
    )
    # No usage-stats reporting from an offline box; callers may override.
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("DO_NOT_TRACK", "1")
    # VLLM_CPU_OMP_THREADS_BIND is left at "auto": on 2 cores the worker gets
    # core 0 and core 1 stays free for the API server and engine core; binding
    # both to the worker measured no faster.
    return env


def wait_for_engine(
    base_url: str,
    timeout: float,
    proc: subprocess.Popen[Any] | None = None,
    *,
    log_path: Path | str | None = None,
    poll_interval: float = 0.5,
) -> None:
    """Block until ``GET {base_url}/health`` answers 200.

    Args:
        base_url: the server root, e.g. ``"http://127.0.0.1:8000"`` (no ``/v1``).
        timeout: seconds to wait in total.
        proc: the server process; if it exits, waiting stops at once.
        log_path: the server's log file, whose tail goes into the error.
        poll_interval: seconds between polls.

    Raises:
        RuntimeError: the process exited before the server became healthy.
        TimeoutError: the server was not healthy within ``timeout`` seconds.
    """
    url = base_url.rstrip("/") + "/health"
    # No proxies: an http_proxy in the environment must not catch 127.0.0.1.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    last_error = "no answer yet"
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"vLLM server exited with code {proc.returncode} before {url} was healthy"
                + _log_tail(log_path)
            )
        try:
            with opener.open(url, timeout=min(5.0, timeout)) as response:
                if response.status == 200:
                    return
                last_error = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:  # e.g. 503 while the engine starts
            last_error = f"HTTP {exc.code}"
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            last_error = str(getattr(exc, "reason", exc))
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"vLLM server at {url} not healthy after {timeout:g}s ({last_error})"
                + _log_tail(log_path)
            )
        time.sleep(poll_interval)


def _log_tail(log_path: Path | str | None, lines: int = 40) -> str:
    """The last ``lines`` of the log, formatted for an error message."""
    if log_path is None:
        return ""
    return f"\n--- last {lines} lines of {log_path} ---\n{log_tail(log_path, lines)}"
