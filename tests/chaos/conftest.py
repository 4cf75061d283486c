"""The real embedded mesh (`ragmesh.mesh.Mesh`, as `ragmesh up` runs it: Valkey with AOF,
Milvus Lite, MiniLM, the workers and the API) with the sample handbook indexed, shared by the
fast fault cases. It uses the session's vLLM engine instead of starting its own (a minute and
a half on two cores; no fault here touches the engine) and a 2-second heartbeat (a dead
worker's job is found within 6 s)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.chaos import DOC_RATE, QUERY_RATE, chaos_settings, questions
from bench.chaos.load import Load
from bench.chaos.mesh import ChaosMesh


@pytest.fixture(scope="module")
def chaos_mesh(vllm_server: str, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[ChaosMesh]:
    state: Path = tmp_path_factory.mktemp("chaos")
    mesh = ChaosMesh(chaos_settings(state, generator_engine_url=vllm_server,
                                    generator_model="tiny", worker_heartbeat=2),
                     report=lambda line: print(line, flush=True))
    mesh.start()
    try:
        mesh.wait_ready()
        mesh.ingest_handbook()
        yield mesh
    finally:
        mesh.stop()


@pytest.fixture
def load(chaos_mesh: ChaosMesh) -> Iterator[Load]:
    steady = Load(chaos_mesh.api_url, chaos_mesh.api_key, questions(), QUERY_RATE, DOC_RATE)
    yield steady
    steady.close()
