"""Retrieval benchmark: search latency and recall@10 through the retriever against exact
brute-force search with NumPy on the same vectors, side by side. Prints the figures, their
ratio and the goals, and writes retrieval.json, retrieval.md and two PNGs.

    python -m bench.retrieval [--chunks 100000] [--queries 200] [--quick] [--out DIR]

It starts a Milvus Lite server the way `ragmesh up` does (its own process, data in a
temporary folder), writes a synthetic collection through the retriever's MilvusStore a
document at a time, waits until every segment is indexed, then for each query times the
retriever's search (services.retriever.core.retrieve over the store, as the retrieve task
calls it) and NumPy's exact top-10 one after the other, alternating which goes first, so
drift on a noisy machine hits both sides.

The vectors stand in for all-MiniLM-L6-v2 (384 dimensions, unit length): topics of
different sizes and spreads, each a centre plus variation along a few directions of its
own, plus a little noise everywhere; questions are chunks moved a little within their topic
and off it. Pure uniform random vectors would be unlike any text embedding.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragmesh.mesh import start_milvus_lite
from services.retriever import core
from services.retriever.store import Index, MilvusStore
from shared.jobs import IndexedChunk
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DIM = 384  # all-MiniLM-L6-v2
TOP_K = 10
COLLECTION = "bench"
GOAL_RECALL = 0.95
GOAL_RATIO = 2.0


@dataclass
class Corpus:
    vectors: np.ndarray  # (n, DIM) float32, unit rows
    topics: np.ndarray  # (n,) topic of each chunk
    queries: np.ndarray  # (q, DIM) float32, unit rows
    texts: list[str]  # a pool of chunk texts, reused round-robin


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_corpus(chunks: int, queries: int, seed: int = 6) -> Corpus:
    """Seeded synthetic embeddings shaped like MiniLM's on text (see the module's docstring):
    a question's best chunk scores about 0.6, its tenth about 0.45, unrelated pairs about
    0.1 (text embeddings share a common direction)."""
    rng = np.random.default_rng(seed)
    n_topics, rank = max(8, chunks // 400), 24
    common = rng.standard_normal(DIM).astype(np.float32)
    centres = _unit(rng.standard_normal((n_topics, DIM)).astype(np.float32))
    popularity = 1.0 / np.sqrt(np.arange(1, n_topics + 1))  # a few big topics, many small
    topics = rng.choice(n_topics, size=chunks, p=popularity / popularity.sum())
    spread = rng.uniform(0.2, 0.4, n_topics).astype(np.float32)
    vectors = np.empty((chunks, DIM), dtype=np.float32)
    bases = []
    for t in range(n_topics):
        basis = rng.standard_normal((rank, DIM)).astype(np.float32) / np.sqrt(DIM)
        bases.append(basis)
        rows = np.flatnonzero(topics == t)
        z = rng.standard_normal((rows.size, rank)).astype(np.float32) * spread[t]
        vectors[rows] = centres[t] + z @ basis
    vectors = _unit(vectors + 0.03 * rng.standard_normal(vectors.shape).astype(np.float32))
    vectors = _unit(vectors + 0.35 * _unit(common[None, :]))
    picks = rng.choice(chunks, size=queries, replace=False)
    moved = np.stack([rng.standard_normal(rank).astype(np.float32) @ bases[topics[i]]
                      * spread[topics[i]] for i in picks])
    qs = _unit(vectors[picks] + moved
               + 0.035 * rng.standard_normal((queries, DIM)).astype(np.float32))
    words = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), rng.integers(2, 10)))
             for _ in range(3000)]
    texts = []
    for _ in range(2000):  # chunks of about 300 characters, like ingest_chunk_size
        text = ""
        while len(text) < 290:
            text += words[rng.integers(len(words))] + " "
        texts.append(text.strip())
    return Corpus(vectors, topics, qs, texts)


# --- the collection ---------------------------------------------------------------------------

def build(store: MilvusStore, corpus: Corpus, doc_chunks: int,
          report: Callable[[str], None]) -> float:
    """Write every chunk through MilvusStore.replace_document, one document at a time."""
    n = len(corpus.vectors)
    started = last = time.perf_counter()
    for doc, first in enumerate(range(0, n, doc_chunks)):
        rows = range(first, min(n, first + doc_chunks))
        chunks = [IndexedChunk(chunk_id=str(i), text=corpus.texts[i % len(corpus.texts)],
                               vector=corpus.vectors[i].tolist()) for i in rows]
        store.replace_document(COLLECTION, f"bench:doc{doc:05d}", f"doc{doc:05d}",
                               f"doc{doc:05d}.md", chunks)
        if time.perf_counter() - last > 10 or rows.stop == n:
            last = time.perf_counter()
            report(f"  inserted {rows.stop:>7} / {n} chunks  ({last - started:5.1f} s)")
    return time.perf_counter() - started


def _segments_indexed(data_dir: Path) -> tuple[bool, tuple[str, ...]]:
    """Whether every data file of the collection has its vector index built (Milvus Lite
    builds them in the background after a flush or a compaction; a segment without one is
    searched by brute force meanwhile). Read from the server's own files: the API says
    `Finished` from the start."""
    root = data_dir / "collections" / COLLECTION
    manifest = json.loads((root / "manifest.json").read_text())
    files: list[str] = []
    done = True
    for name, part in manifest.get("partitions", {}).items():
        for rel in part.get("data_files", []):
            files.append(f"{name}/{rel}")
            stem = Path(rel).stem
            if not list((root / "partitions" / name / "indexes").glob(f"{stem}.vector.*")):
                done = False
    return done, tuple(sorted(files))


def _cpu_seconds(pid: int) -> float:
    """CPU time a process has used so far (Linux); 0 where /proc cannot tell."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_indexed(data_dir: Path, pid: int, timeout: float,
                 report: Callable[[str], None]) -> float:
    """Until every segment is indexed and the server is idle: compaction, which runs in the
    background after a flush and may merge segments into a new one not yet indexed, is
    over when the server stops using CPU."""
    started = time.perf_counter()
    cpu = _cpu_seconds(pid)
    while time.perf_counter() - started < timeout:
        time.sleep(2.0)
        used, cpu = _cpu_seconds(pid) - cpu, _cpu_seconds(pid)
        try:
            done, _ = _segments_indexed(data_dir)
        except (OSError, ValueError):  # the manifest is being replaced
            done = False
        if done and used < 0.1:
            return time.perf_counter() - started
    report(f"  indexes not settled after {timeout:.0f} s; measuring anyway")
    return time.perf_counter() - started


# --- the measurement ----------------------------------------------------------------------------

def exact_top(vectors: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    scores = vectors @ q
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top])]


def measure(store: MilvusStore, corpus: Corpus, warmup: int = 20) -> dict[str, Any]:
    """Per query: the retriever's search and NumPy's, alternating which goes first."""
    def retriever(q: np.ndarray) -> list[int]:
        # Threshold -1: recall is measured on the ranking alone, every hit kept.
        return [int(c.chunk_id) for c in core.retrieve(store, COLLECTION, q.tolist(), TOP_K,
                                                       -1.0)]

    for q in corpus.queries[:warmup]:
        retriever(q)
        exact_top(corpus.vectors, q, TOP_K)
    lat_r, lat_b, recall = [], [], []
    for i, q in enumerate(corpus.queries):
        sides: list[tuple[str, Callable[[], Any]]] = [
            ("r", lambda q=q: retriever(q)), ("b", lambda q=q: exact_top(corpus.vectors, q,
                                                                          TOP_K))]
        out: dict[str, Any] = {}
        for name, fn in sides if i % 2 == 0 else sides[::-1]:
            t = time.perf_counter()
            out[name] = fn()
            (lat_r if name == "r" else lat_b).append(time.perf_counter() - t)
        recall.append(len(set(out["r"]) & set(out["b"].tolist())) / TOP_K)
    return {"retriever_s": lat_r, "brute_s": lat_b, "recall": recall}


def _pct(values: list[float], p: float) -> float:
    return float(np.percentile(values, p))


def summarise(raw: dict[str, Any]) -> dict[str, float]:
    r, b = raw["retriever_s"], raw["brute_s"]
    return {
        "retriever_p50_ms": _pct(r, 50) * 1000, "retriever_p95_ms": _pct(r, 95) * 1000,
        "brute_force_p50_ms": _pct(b, 50) * 1000, "brute_force_p95_ms": _pct(b, 95) * 1000,
        "p50_ratio_retriever_over_brute": _pct(r, 50) / _pct(b, 50),
        "p95_ratio_retriever_over_brute": _pct(r, 95) / _pct(b, 95),
        "recall_at_10": statistics.fmean(raw["recall"]),
        "recall_at_10_min": min(raw["recall"]),
    }


# --- report ---------------------------------------------------------------------------------------

def plot(raw: dict[str, Any], out_dir: Path, label: str) -> list[str]:
    import matplotlib  # noqa: PLC0415 (only for the report)
    import matplotlib.ticker  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7, 4))
    for key, name in (("retriever_s", "retriever (Milvus Lite)"),
                      ("brute_s", "exact brute force (NumPy)")):
        ms = np.sort(np.asarray(raw[key]) * 1000)
        ax.plot(ms, np.arange(1, ms.size + 1) / ms.size, label=name)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("search latency (ms, log scale)")
    ax.set_ylabel("share of queries")
    ax.set_title(f"Top-10 search latency, {label}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "retrieval-latency.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3.5))
    values, counts = np.unique(np.round(raw["recall"], 1), return_counts=True)
    ax.bar(values, counts, width=0.08)
    ax.axvline(GOAL_RECALL, color="red", linestyle="--", label=f"goal {GOAL_RECALL}")
    ax.set_xlabel("recall@10 of one query")
    ax.set_ylabel("queries")
    ax.set_title(f"Recall@10 against exact search, {label}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "retrieval-recall.png", dpi=110)
    plt.close(fig)
    return ["retrieval-latency.png", "retrieval-recall.png"]


def markdown(result: dict[str, Any], standalone: bool = False) -> str:
    """The section's text; `standalone` (retrieval.md) adds its title, goals and plots, which
    `make bench`'s report adds itself."""
    f = result["figures"]
    lines = [f"## {result['title']}", ""] if standalone else []
    lines += [f"{f['chunks']:.0f} chunks of {DIM} dimensions, {f['queries']:.0f} queries, "
              f"top {TOP_K}; built in {f['build_s']:.0f} s, indexes settled in "
              f"{f['index_wait_s']:.0f} s. Absolute times are for reference only; "
              "the ratio was measured side by side.", "",
              "| | p50 (ms) | p95 (ms) |", "| --- | ---: | ---: |",
              f"| retriever | {f['retriever_p50_ms']:.2f} | {f['retriever_p95_ms']:.2f} |",
              f"| exact brute force (NumPy) | {f['brute_force_p50_ms']:.2f} | "
              f"{f['brute_force_p95_ms']:.2f} |",
              f"| ratio retriever / brute force | {f['p50_ratio_retriever_over_brute']:.2f} | "
              f"{f['p95_ratio_retriever_over_brute']:.2f} |", "",
              f"Recall@10: {f['recall_at_10']:.3f} (worst query {f['recall_at_10_min']:.1f})."]
    if not standalone:
        return "\n".join(lines) + "\n"
    lines += ["", "| Goal | Value | Target | Met |", "| --- | ---: | --- | --- |"]
    lines += [f"| {g['name']} | {g['value']:.3f} | {g['goal']} | {'yes' if g['met'] else 'NO'} |"
              for g in result["goals"]]
    lines += [""] + [f"![{p}]({p})" for p in result["plots"]]
    return "\n".join(lines) + "\n"


@contextmanager
def milvus_lite(data_dir: Path) -> Iterator[tuple[str, int]]:
    """A Milvus Lite server over `data_dir`, started the way the mesh starts it: (URI, pid)."""
    proc, uri = start_milvus_lite(data_dir, data_dir.parent / "milvus.log")
    try:
        yield uri, proc.pid or 0
    finally:
        proc.stop()


def run(out_dir: Path, quick: bool = False, chunks: int | None = None,
        queries: int | None = None, report: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole benchmark; PNGs go to `out_dir`. Quick: 20,000 chunks and 100 queries."""
    chunks = chunks or (20_000 if quick else 100_000)
    queries = queries or (100 if quick else 200)
    # Documents of 2,000 chunks at 100,000 (a long manual): Milvus Lite's delete by filter,
    # which MilvusStore runs before writing a document, takes about a second there.
    doc_chunks = max(100, chunks // 50)
    out_dir.mkdir(parents=True, exist_ok=True)
    report(f"retrieval: {chunks} chunks, {queries} queries")
    corpus = make_corpus(chunks, queries)
    with tempfile.TemporaryDirectory(prefix="ragmesh-bench-") as tmp:
        data_dir = Path(tmp) / "milvus.db"
        with milvus_lite(data_dir) as (uri, pid):
            store = MilvusStore(uri, index=Index.from_settings(Settings()))
            build_s = build(store, corpus, doc_chunks, report)
            wait_s = wait_indexed(data_dir, pid, 600, report)
            report(f"  indexes settled after {wait_s:.1f} s; measuring")
            raw = measure(store, corpus)
            store.client.close()
    figures: dict[str, float] = {"chunks": chunks, "queries": queries, "build_s": build_s,
                                 "index_wait_s": wait_s, **summarise(raw)}
    goals = [
        {"name": "recall@10", "value": figures["recall_at_10"], "goal": f">= {GOAL_RECALL}",
         "met": figures["recall_at_10"] >= GOAL_RECALL},
        {"name": "p50 retriever / brute force", "value":
         figures["p50_ratio_retriever_over_brute"], "goal": f"<= {GOAL_RATIO}",
         "met": figures["p50_ratio_retriever_over_brute"] <= GOAL_RATIO},
    ]
    label = f"{chunks} chunks"
    result: dict[str, Any] = {"title": "Retrieval: latency and recall@10 against brute force",
                              "figures": figures, "goals": goals,
                              "plots": plot(raw, out_dir, label)}
    result["markdown"] = markdown(result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=None, help="default 100000 (quick 20000)")
    parser.add_argument("--queries", type=int, default=None, help="default 200 (quick 100)")
    parser.add_argument("--quick", action="store_true", help="a smaller collection, < 1 min")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench-retrieval")
    args = parser.parse_args()
    result = run(args.out, quick=args.quick, chunks=args.chunks, queries=args.queries)
    f = result["figures"]
    print(f"\n{f['chunks']:.0f} chunks, {f['queries']:.0f} queries, top {TOP_K} "
          f"(absolute times for reference only)")
    print(f"  retriever     p50 {f['retriever_p50_ms']:8.2f} ms   p95 "
          f"{f['retriever_p95_ms']:8.2f} ms")
    print(f"  brute force   p50 {f['brute_force_p50_ms']:8.2f} ms   p95 "
          f"{f['brute_force_p95_ms']:8.2f} ms")
    print(f"  ratio retriever/brute force   p50 {f['p50_ratio_retriever_over_brute']:.2f}   "
          f"p95 {f['p95_ratio_retriever_over_brute']:.2f}")
    print(f"  recall@10 {f['recall_at_10']:.3f} (worst query {f['recall_at_10_min']:.1f})")
    for g in result["goals"]:
        print(f"  goal {g['name']} {g['goal']}: {g['value']:.3f} "
              f"{'met' if g['met'] else 'NOT MET'}")
    (args.out / "retrieval.json").write_text(json.dumps(
        {k: v for k, v in result.items() if k != "markdown"}, indent=2))
    (args.out / "retrieval.md").write_text(markdown(result, standalone=True))
    print(f"report: {args.out / 'retrieval.md'}")


if __name__ == "__main__":
    main()
