"""Generator benchmark: answer tokens per second and time to first token through the whole
mesh (API -> embed -> retrieve -> generate, streamed over SSE) against the same prompts sent
straight to the same engine at the same concurrency. Prints the figures and their ratios.

    python -m bench.generator [--concurrency 4] [--questions 16] [--max-tokens 64]

It starts the mesh on the embedded default in a temporary state folder (Valkey, Milvus Lite,
MiniLM, vLLM serving SmolLM2), ingests the sample handbook, and runs the two sides
alternately, twice each, so drift on a noisy machine hits both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from ragmesh.client import Client
from ragmesh.mesh import Mesh, default_model_dir
from services.generator.prompt import build_messages, fixed_tokens, plan
from services.generator.tokens import EngineTokens
from shared.jobs import Chunk
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


async def _mesh_one(session: aiohttp.ClientSession, api: str, key: str, question: str,
                    max_tokens: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    started = time.perf_counter()
    async with session.post(f"{api}/v1/queries", headers=headers,
                            json={"question": question, "max_tokens": max_tokens}) as resp:
        query_id = (await resp.json())["id"]
    first = None
    final: dict[str, Any] = {}
    async with session.get(f"{api}/v1/queries/{query_id}/events", headers=headers) as resp:
        event = ""
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                if event == "delta" and first is None:
                    first = time.perf_counter() - started
                elif event == "final":
                    final = json.loads(line[6:])
    return {"ttft": first, "tokens": final.get("usage", {}).get("completion_tokens", 0),
            "status": final.get("status"), "citations": final.get("citations", []),
            "question": question, "timings": final.get("timings_ms", {})}


async def _direct_one(session: aiohttp.ClientSession, engine: str, model: str,
                      messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
    body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True}
    started = time.perf_counter()
    first, tokens = None, 0
    async with session.post(f"{engine}/chat/completions", json=body) as resp:
        async for raw in resp.content:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if first is None and any((c.get("delta") or {}).get("content")
                                     for c in event.get("choices") or []):
                first = time.perf_counter() - started
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
    return {"ttft": first, "tokens": tokens, "status": "succeeded"}


async def _run(jobs: list[Any], concurrency: int) -> tuple[list[dict[str, Any]], float]:
    """Run coroutine factories with at most `concurrency` in flight; (results, wall time)."""
    gate = asyncio.Semaphore(concurrency)

    async def guarded(factory: Any) -> dict[str, Any]:
        async with gate:
            return await factory()

    started = time.perf_counter()
    results = await asyncio.gather(*(guarded(j) for j in jobs))
    return list(results), time.perf_counter() - started


def _summary(results: list[dict[str, Any]], wall: float) -> dict[str, float]:
    ttfts = sorted(r["ttft"] for r in results if r["ttft"] is not None)
    tokens = sum(r["tokens"] for r in results)
    stages = {f"mean_{k}_ms": statistics.mean(r["timings"].get(k, 0) for r in results)
              for k in ("embed_queued", "embed", "retrieve_queued", "retrieve",
                        "generate_queued", "generate", "total")} if "timings" in results[0] else {}
    return {**stages, "tokens_per_s": tokens / wall, "tokens": tokens, "wall_s": wall,
            "ttft_p50_ms": statistics.median(ttfts) * 1000,
            "ttft_p95_ms": ttfts[max(0, int(len(ttfts) * 0.95) - 1)] * 1000,
            "failed": sum(r["status"] != "succeeded" for r in results)}


async def bench(api: str, key: str, engine: str, model: str, questions: list[str],
                concurrency: int, max_tokens: int, rounds: int) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        # A warm-up pass through the mesh also gives the exact prompts the mesh built.
        warm, _ = await _run([lambda q=q: _mesh_one(session, api, key, q, max_tokens)
                              for q in questions], concurrency)
        prompts = []
        tokens = EngineTokens(engine, model, 2048)  # as the generator counts them
        fixed = fixed_tokens(tokens.count)
        budget = plan(tokens.context_len, fixed, max_tokens,
                      Settings().generator_max_context_tokens)
        for r in warm:
            chunks = [Chunk(document_id=c["document_id"], chunk_id=c["chunk_id"],
                            source=c["source"], text=c["text"], score=c["score"])
                      for c in r["citations"]]
            prompts.append(build_messages(r["question"], chunks, budget, tokens.count)[0])
        sides: dict[str, list[dict[str, float]]] = {"mesh": [], "direct": []}
        for _ in range(rounds):
            res, wall = await _run([lambda m=m: _direct_one(session, engine, model, m,
                                                            max_tokens) for m in prompts],
                                   concurrency)
            sides["direct"].append(_summary(res, wall))
            res, wall = await _run([lambda q=q: _mesh_one(session, api, key, q, max_tokens)
                                    for q in questions], concurrency)
            sides["mesh"].append(_summary(res, wall))
    med = {side: {k: statistics.median(run[k] for run in runs) for k in runs[0]}
           for side, runs in sides.items()}
    med["ratio"] = {"tokens_per_s_mesh_over_direct": med["mesh"]["tokens_per_s"]
                    / med["direct"]["tokens_per_s"],
                    "ttft_p50_mesh_over_direct": med["mesh"]["ttft_p50_ms"]
                    / med["direct"]["ttft_p50_ms"]}
    return med


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench-generator.json")
    args = parser.parse_args()
    lines = [json.loads(x) for x in (ROOT / "examples" / "handbook-eval.jsonl").open()]
    questions = [x["question"] for x in lines if x["expected_sources"]][: args.questions]
    with tempfile.TemporaryDirectory() as state:
        settings = Settings(state_dir=Path(state), api_port=0, engine_port=0,
                            generator_max_concurrency=args.concurrency,
                            generator_queue_timeout=600, generator_timeout=600,
                            generator_extra_body={"ignore_eos": True}, log_level="WARNING")
        model = default_model_dir(Path(".ragmesh").resolve())
        mesh = Mesh(settings, report=print, engine_model=str(model) if model.exists() else None)
        mesh.start()
        try:
            with Client(mesh.api_url, mesh.api_key) as client:
                ids = [client.upload(p)["id"] for p in sorted((ROOT / "examples" /
                                                               "handbook").iterdir())]
                client.wait_documents(ids)
            result = asyncio.run(bench(mesh.api_url, mesh.api_key,
                                       mesh.env["RAGMESH_GENERATOR_ENGINE_URL"],
                                       settings.generator_model, questions, args.concurrency,
                                       args.max_tokens, args.rounds))
        finally:
            mesh.stop()
    result["config"] = vars(args) | {"out": str(args.out)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nconcurrency {args.concurrency}, {len(questions)} questions x {args.max_tokens} "
          f"tokens, median of {args.rounds} rounds")
    for side in ("direct", "mesh"):
        r = result[side]
        print(f"  {side:6}  {r['tokens_per_s']:7.1f} tokens/s   TTFT p50 {r['ttft_p50_ms']:7.1f} ms"
              f"   p95 {r['ttft_p95_ms']:7.1f} ms   failed {r['failed']:.0f}")
    stages = {k[5:-3]: round(v) for k, v in result["mesh"].items() if k.startswith("mean_")}
    print(f"  mesh time per stage (mean ms): {stages}")
    ratio = result["ratio"]
    print(f"  ratio   tokens/s mesh/direct = {ratio['tokens_per_s_mesh_over_direct']:.3f}   "
          f"TTFT p50 mesh/direct = {ratio['ttft_p50_mesh_over_direct']:.2f}")
    print(f"report: {args.out}")


if __name__ == "__main__":
    main()
