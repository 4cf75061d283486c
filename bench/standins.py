"""Stand-ins for the model, the vector store and the engine, so that a benchmark measures
only what lies between them: the mesh (API, Redis, RQ, the stage bookkeeping).

    python -m bench.standins embedder|retriever|generator

runs the real worker of that stage (its real `tasks` module, `shared.worker.run_worker`) with
the stand-in in place of the model, Milvus or vLLM; settings come from the environment as for
`python -m services.<stage>`. The stand-ins answer at once, or, with BENCH_STAGE_MS (e.g.
"embed=5,retrieve=3,generate=200"), after that long without using the CPU, as a GPU or a
remote engine would.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

from services.generator.engine import Generation
from services.generator.tokens import EngineTokens
from shared.jobs import Chunk

DIM = 384
ANSWER = ["Staff", " get", " 25", " days", " of", " annual", " leave", " [1]."]


def stage_delays(spec: str | None = None) -> dict[str, float]:
    """Seconds each stand-in takes, from "embed=5,retrieve=3,generate=200" (ms)."""
    spec = os.environ.get("BENCH_STAGE_MS", "") if spec is None else spec
    pairs = (item.split("=") for item in spec.split(",") if item.strip())
    return {name.strip(): float(ms) / 1000 for name, ms in pairs}


class InstantEncoder:
    """Unit vectors, the same for the same text."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s

    def encode(self, sentences: list[str], **_: object) -> np.ndarray:
        if self.delay_s:
            time.sleep(self.delay_s)
        out = np.empty((len(sentences), DIM), dtype=np.float32)
        for i, text in enumerate(sentences):
            out[i] = np.random.default_rng(abs(hash(text)) % 2**32).standard_normal(DIM)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


class InstantStore:
    """The same relevant chunks for every search."""

    CHUNKS = [Chunk(document_id=f"doc-{i}", chunk_id=f"{i:05d}", source=f"doc-{i}.md",
                    text="Staff get 25 days of annual leave a year, plus public holidays. " * 3,
                    score=0.8 - i * 0.05) for i in range(6)]

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s

    def search(self, collection: str, vector: Sequence[float], top_k: int) -> list[Chunk]:
        if self.delay_s:
            time.sleep(self.delay_s)
        return self.CHUNKS[:top_k]

    def ping(self) -> None:
        pass


class InstantEngine:
    """An OpenAI-style engine that streams a short fixed answer (over `delay_s`)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s

    def ready(self) -> tuple[bool, str]:
        return True, "instant stand-in engine"

    def stream(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float,
               deadline: float, should_stop: Callable[[], str | None],
               on_delta: Callable[[Generation], None] | None = None) -> Generation:
        started = time.monotonic()
        gen = Generation(prompt_tokens=sum(len(m["content"]) // 4 for m in messages))
        for token in ANSWER[:max_tokens]:
            if self.delay_s:
                time.sleep(self.delay_s / len(ANSWER))
            gen.text += token
            gen.deltas.append(token)
            gen.completion_tokens += 1
            if gen.first_token_s is None:
                gen.first_token_s = time.monotonic() - started
            if on_delta is not None:
                on_delta(gen)
        gen.finish_reason = "stop"
        return gen


def instant_tokens(settings: object) -> EngineTokens:
    """Token counts without an engine to ask: the UTF-8 bytes bound (services/generator)."""
    return EngineTokens("instant://engine/v1", "instant",
                        settings.engine_max_model_len, supported=False)  # type: ignore[attr-defined]


def serve(stage: str) -> None:
    """The real worker of `stage` over its stand-in (see the module's docstring)."""
    from shared.jobs import Queues  # noqa: PLC0415
    from shared.logging import setup_logging  # noqa: PLC0415
    from shared.queue import connect  # noqa: PLC0415
    from shared.settings import Settings  # noqa: PLC0415
    from shared.worker import run_worker  # noqa: PLC0415

    settings = Settings()
    setup_logging(settings.log_level, settings.log_json, service=stage)
    connection = connect(settings)
    delays = stage_delays()
    if stage == "embedder":
        from services.embedder import tasks as embed_tasks  # noqa: PLC0415
        from services.embedder.batching import BatchingEncoder  # noqa: PLC0415

        # As services/embedder/__main__.py runs it: lanes over one batching model thread.
        encoder = BatchingEncoder(InstantEncoder(delays.get("embed", 0)),
                                  max_batch=settings.embedding_batch_size,
                                  max_chars=settings.embedding_batch_chars)
        embed_tasks.setup(embed_tasks.Resources(settings, connection, encoder))
        run_worker(settings, stage, [Queues.EMBED], lambda: (True, "stand-in"),
                   lanes=settings.embedding_lanes)
    elif stage == "retriever":
        from services.retriever import tasks as retrieve_tasks  # noqa: PLC0415

        store = InstantStore(delays.get("retrieve", 0))
        retrieve_tasks.setup(retrieve_tasks.Resources(settings, connection,
                                                      store))  # type: ignore[arg-type]
        run_worker(settings, stage, [Queues.RETRIEVE], lambda: (True, "stand-in"))
    elif stage == "generator":
        from services.generator import tasks as gen_tasks  # noqa: PLC0415
        from services.generator.dispatch import EngineSlot  # noqa: PLC0415
        from services.generator.slots import EngineSlots  # noqa: PLC0415

        pool = [EngineSlot(InstantEngine(delays.get("generate", 0)),  # type: ignore[arg-type]
                           EngineSlots(connection, "instant://engine",
                                       settings.generator_max_concurrency,
                                       settings.generator_lease_seconds),
                           instant_tokens(settings))]
        gen_tasks.setup(gen_tasks.Resources(settings, connection, pool))
        run_worker(settings, stage, [Queues.GENERATE], lambda: (True, "stand-in"),
                   lanes=settings.lanes)
    else:
        raise SystemExit(f"unknown stage {stage!r}: embedder, retriever or generator")


if __name__ == "__main__":
    serve(sys.argv[1] if len(sys.argv) > 1 else "")
