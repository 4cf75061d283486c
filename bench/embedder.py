"""Embedder throughput: embedding jobs through a real embedder worker against the same model's
offline `encode` in this process, side by side in one run, as ratios.

    python -m bench.embedder [--quick] [--threads 1] [--lanes 16] [--out reports/bench]

What runs: Valkey (as `ragmesh up` runs it: password, AOF every second) and two real embedder
workers (`python -m services.embedder`, the bundled MiniLM), each on its own Redis database:
"before", one lane (one job at a time: the embedder before dynamic batching), and "after",
`--lanes` lanes whose texts share encode calls. The bench works at the stage level, as the API
does: it creates a query record, enqueues an embed-query job, and takes the retrieve job the
embedder hands on as the completion signal, keeping exactly C jobs outstanding. The offline
side is `encode` on batches of the same questions (batch size C, and 32), in this process,
with the same torch threads as the workers. At each C the three sides run one after the other,
in an order that turns each round, so drift on a busy machine hits them all.

Ingestion likewise: embed-document jobs (the sample handbook's text files as one document of
about a hundred chunks) against offline chunking + `encode` of the same document, in chunks
per second.

The CPU time per job of the worker, Valkey and this driver comes from /proc: what RQ's and the
records' bookkeeping cost next to the model, whatever else the machine runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families
from rq.job import Job
from rq.serializers import JSONSerializer

from bench import report
from ragmesh.procs import Proc, free_port, log_tail, wait_until
from ragmesh.valkey import valkey_proc, wait_for_valkey
from services.embedder import core
from services.embedder.chunking import chunk_text
from shared import health
from shared.jobs import EmbedDocumentJob, EmbedQueryJob, QueryParams, Queues, Tasks
from shared.queue import enqueue
from shared.records import DocumentRecords, QueryRecords, owner_of
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
LEVELS = (1, 8, 32)
DOC_LEVELS = (1, 4)
MIXED_QUERIES = 4  # questions outstanding beside one document
QUERY_SIDES = ["offline", "before", "after", "eager"]
DOC_SIDES = ["offline", "before", "after"]
OWNER = owner_of("bench-key")
PARAMS = QueryParams(top_k=6, collection="bench", max_tokens=64, temperature=0.0)
DONE = f"rq:queue:{Queues.RETRIEVE.value}"  # RQ's list of the queue the embedder hands on to


def questions() -> list[str]:
    import json  # noqa: PLC0415

    lines = (ROOT / "examples" / "handbook-eval.jsonl").read_text().splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()]


def handbook_document() -> str:
    """The sample handbook's plain-text files as one document."""
    folder = ROOT / "examples" / "handbook"
    return "\n\n".join(p.read_text() for p in sorted(folder.glob("*")) if p.suffix in
                       (".md", ".txt"))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Side:
    """One embedder worker process and a driver on its Redis database."""

    label: str
    proc: Proc
    conn: redis.Redis
    metrics_port: int
    queries: QueryRecords = field(init=False)
    docs: DocumentRecords = field(init=False)
    embed_work_ms: dict[str, float] = field(default_factory=dict)  # query id → embed work

    def __post_init__(self) -> None:
        self.queries = QueryRecords(self.conn, 3600)
        self.docs = DocumentRecords(self.conn, 3600)

    def submit_query(self, text: str) -> str:
        query_id = self.queries.create(OWNER, text, PARAMS, deadline=3600)
        enqueue(self.conn, Tasks.EMBED_QUERY,
                EmbedQueryJob(query_id=query_id, question=text, params=PARAMS), job_timeout=300)
        return query_id

    def submit_document(self, text: str) -> None:
        document_id = f"bench-{uuid.uuid4().hex}"
        doc_key, generation, _ = self.docs.upsert(OWNER, document_id, "handbook.md", "bench",
                                                  len(text), {})
        enqueue(self.conn, Tasks.EMBED_DOCUMENT, EmbedDocumentJob(
            doc_key=doc_key, generation=generation, document_id=document_id, owner=OWNER,
            source="handbook.md", collection="bench", text=text), job_timeout=300)

    def wait_done(self) -> str:
        """One job handed on: "query" or "document"; a query's embed work time (which travels
        with the job, not in the record) is kept for `embed_ms`, its vector is dropped."""
        popped = self.conn.blpop([DONE], timeout=60)
        if popped is None:
            raise TimeoutError(f"{self.label}: no job finished within 60 s; last lines of "
                               f"{self.proc.log_path}:\n{log_tail(self.proc.log_path)}")
        job = Job.fetch(popped[1].decode(), connection=self.conn, serializer=JSONSerializer)
        self.conn.unlink(job.key)
        if job.func_name == Tasks.INDEX_DOCUMENT.value:
            return "document"
        payload = job.args[0]
        self.embed_work_ms[payload["query_id"]] = float(payload["timings_ms"]["embed"])
        return "query"

    def embed_ms(self, query_ids: list[str]) -> list[float]:
        """Each query's embed stage: its queue wait (from its record) plus its work."""
        with self.conn.pipeline(transaction=False) as pipe:
            for query_id in query_ids:
                pipe.hget(self.queries.key(query_id), "w_embed")
            waits = pipe.execute()
        return [float(w) + self.embed_work_ms[q] for q, w in zip(query_ids, waits, strict=True)
                if w is not None and q in self.embed_work_ms]

    def batches(self) -> tuple[float, float]:
        """(texts, encode calls) the worker has reported so far."""
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text
        values = {s.name: s.value for f in text_string_to_metric_families(text)
                  for s in f.samples if s.name.startswith("ragmesh_embed_batch_texts")}
        return values.get("ragmesh_embed_batch_texts_sum", 0.0), \
            values.get("ragmesh_embed_batch_texts_count", 0.0)


@dataclass
class Measured:
    rate: float  # jobs (or texts, chunks) per second, steady state
    cpu_ms: dict[str, float]  # CPU per job by process
    batch: float = 0.0  # mean texts per encode call in the worker


def closed_loop(side: Side, submit: Callable[[int], None], concurrency: int,
                seconds: float) -> tuple[int, float, int]:
    """Keep `concurrency` jobs outstanding for `seconds` (and 4 completions past the first
    `concurrency`); (jobs counted, their seconds, jobs sent), counted from the
    `concurrency`-th completion on, so the ramp-up does not count."""
    started = time.perf_counter()
    sent = 0
    for _ in range(concurrency):
        submit(sent)
        sent += 1
    done: list[float] = []
    while True:
        side.wait_done()
        done.append(time.perf_counter())
        if done[-1] - started >= seconds and len(done) >= concurrency + 4:
            break
        submit(sent)
        sent += 1
    for _ in range(sent - len(done)):  # drain, not counted
        side.wait_done()
    first = concurrency - 1
    return len(done) - 1 - first, done[-1] - done[first], sent


def through_worker(side: Side, vk: Proc, submit: Callable[[int], None], concurrency: int,
                   seconds: float) -> Measured:
    assert side.proc.pid and vk.pid
    texts0, calls0 = side.batches()
    cpu0 = {"worker": cpu_seconds(side.proc.pid), "valkey": cpu_seconds(vk.pid),
            "driver": time.process_time()}
    counted, took, jobs = closed_loop(side, submit, concurrency, seconds)
    cpu1 = {"worker": cpu_seconds(side.proc.pid), "valkey": cpu_seconds(vk.pid),
            "driver": time.process_time()}
    texts1, calls1 = side.batches()
    return Measured(counted / took, {k: (cpu1[k] - cpu0[k]) / jobs * 1000 for k in cpu0},
                    (texts1 - texts0) / max(1.0, calls1 - calls0))


def mixed(side: Side, document: str, texts: list[str], concurrency: int,
          seconds: float) -> list[float]:
    """`concurrency` questions and one document outstanding at all times, for `seconds`:
    the questions' embed latency (ms) while documents go through the same worker."""
    sent: list[str] = [side.submit_query(texts[i % len(texts)]) for i in range(concurrency)]
    side.submit_document(document)
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        if side.wait_done() == "document":
            side.submit_document(document)
        else:
            sent.append(side.submit_query(texts[len(sent) % len(texts)]))
    for _ in range(concurrency + 1):  # drain
        side.wait_done()
    return side.embed_ms(sent)


def offline(encoder: core.Encoder, texts: list[str], per_call: int, seconds: float,
            batch_size: int = 32) -> Measured:
    """`encode` on consecutive runs of `per_call` texts for `seconds` (in batches of at most
    `batch_size`, as the embedder encodes a document): texts per second."""
    started, cpu0, done, i = time.perf_counter(), time.process_time(), 0, 0
    while time.perf_counter() - started < seconds:
        chunk = [texts[(i + k) % len(texts)] for k in range(per_call)]
        core.embed(encoder, chunk, min(per_call, batch_size))
        done, i = done + per_call, i + per_call
    took = time.perf_counter() - started
    return Measured(done / took, {"bench": (time.process_time() - cpu0) / done * 1000})


REAL = ("services.embedder",)
INSTANT = ("bench.standins", "embedder")


def default_sides(lanes: int) -> list[tuple[str, tuple[str, ...], dict[str, str]]]:
    """before: one job at a time, the eager model, a document in encode calls of up to 32
    chunks, as the embedder was; after: the defaults (`lanes` lanes, batching, the traced
    transformer); eager: after without the traced transformer; instant: after over an instant
    stand-in model, what the worker costs without the model."""
    lanes_env = {"RAGMESH_EMBEDDING_LANES": str(lanes)}
    return [("before", REAL, {"RAGMESH_EMBEDDING_LANES": "1", "RAGMESH_EMBEDDING_TRACE": "false",
                              "RAGMESH_EMBEDDING_BATCH_CHARS": "1000000"}),
            ("after", REAL, lanes_env),
            ("eager", REAL, {**lanes_env, "RAGMESH_EMBEDDING_TRACE": "false"}),
            ("instant", INSTANT, lanes_env)]


@contextmanager
def workers(state: Path, threads: int, specs: list[tuple[str, tuple[str, ...], dict[str, str]]],
            logs: Path | None = None) -> Iterator[tuple[Proc, dict[str, Side]]]:
    """Valkey and one embedder worker per spec (label, module and arguments, environment),
    each on its own database; their logs go to `logs` (default: the state folder)."""
    logs = logs or state / "logs"
    vk, url = valkey_proc(state / "valkey", "bench-password")
    with ExitStack() as stack:
        stack.callback(vk.stop)
        vk.start()
        wait_for_valkey(vk, url)
        sides: dict[str, Side] = {}
        for db, (label, module, extra) in enumerate(specs):
            db_url = url.rsplit("/", 1)[0] + f"/{db}"
            port = free_port()
            env = {"RAGMESH_REDIS_URL": db_url, "RAGMESH_EMBEDDING_THREADS": str(threads),
                   "RAGMESH_METRICS_PORT": str(port), "RAGMESH_STATE_DIR": str(state),
                   "RAGMESH_LOG_LEVEL": "WARNING", "RAGMESH_WORKER_NAME": f"bench-{label}",
                   "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", **extra}
            proc = Proc(f"embedder-{label}", [sys.executable, "-m", *module],
                        logs / f"embedder-{label}.log", env=env, cwd=ROOT).start()
            stack.callback(proc.stop, 10)
            conn = redis.Redis.from_url(db_url, socket_timeout=120)  # BLPOP waits up to 60 s
            stack.callback(conn.close)
            sides[label] = Side(label, proc, conn, port)
        for side in sides.values():
            wait_until(lambda s=side: bool(health.workers(s.conn, "embedder")), 120,
                       f"embedder {side.label}", [side.proc])
        yield vk, sides


@dataclass
class Bench:
    """The measurements of one run, by name (`q8_after`: queries at C=8 through the batched
    worker; `d4_offline`: the document offline), in the order they were taken."""

    vk: Proc
    sides: dict[str, Side]
    encoder: core.Encoder
    texts: list[str]
    document: str
    chunks: list[str]
    seconds: float
    results: dict[str, list[Measured]] = field(default_factory=dict)
    mixed: dict[str, list[float]] = field(default_factory=dict)  # query latencies, ms

    def keep(self, name: str, m: Measured) -> None:
        self.results.setdefault(name, []).append(m)
        print(f"  {name}: {m.rate:.1f}/s, batch {m.batch:.1f}, cpu ms/job "
              + ", ".join(f"{k} {v:.1f}" for k, v in m.cpu_ms.items()), flush=True)

    def queries(self, side: str, c: int, seconds: float | None = None) -> Measured:
        s = self.sides[side]
        return through_worker(s, self.vk, lambda i: s.submit_query(self.texts[i % len(self.texts)]),
                              c, seconds or self.seconds)

    def documents(self, side: str, c: int, seconds: float | None = None) -> Measured:
        s = self.sides[side]
        m = through_worker(s, self.vk, lambda i: s.submit_document(self.document), c,
                           seconds or self.seconds)
        m.rate *= len(self.chunks)  # documents per second to chunks per second
        return m

    def warm_up(self) -> None:
        """Imports, connections, Lua scripts, torch's first calls, on every side."""
        for side in self.sides:
            self.queries(side, 8, 2.0)
            self.documents(side, 2, 2.0)
        offline(self.encoder, self.texts, 32, 2.0)

    def round(self, r: int) -> None:
        for c in LEVELS:
            for name in _order(r, QUERY_SIDES):
                self.keep(f"q{c}_{name}", offline(self.encoder, self.texts, c, self.seconds)
                          if name == "offline" else self.queries(name, c))
        self.keep("q32_instant", self.queries("instant", 32))
        for name in ("before", "after"):
            latencies = mixed(self.sides[name], self.document, self.texts, MIXED_QUERIES,
                              self.seconds)
            self.mixed.setdefault(name, []).extend(latencies)
            print(f"  mixed_{name}: query embed p50 {report.pct(latencies, 50):.0f} ms, "
                  f"p95 {report.pct(latencies, 95):.0f} ms", flush=True)
        for c in DOC_LEVELS:
            for name in _order(r, DOC_SIDES):
                self.keep(f"d{c}_{name}", offline(self.encoder, self.chunks, len(self.chunks),
                                                  self.seconds)
                          if name == "offline" else self.documents(name, c))


def run(out_dir: Path, quick: bool = False, threads: int = 1, lanes: int | None = None) -> dict:
    seconds, rounds = (3.0, 1) if quick else (8.0, 3)
    settings = Settings(_env_file=None)
    lanes = lanes or settings.embedding_lanes
    document = handbook_document()
    chunks = chunk_text(document, settings.ingest_chunk_size, settings.ingest_chunk_overlap)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    encoder = core.load_encoder(settings.embedding_model, settings.embedding_device, threads)
    print(f"offline model: {core.trace_transformer(encoder)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="ragmesh-bench-") as tmp, \
            workers(Path(tmp), threads, default_sides(lanes), out_dir / "logs") as (vk, sides):
        bench = Bench(vk, sides, encoder, questions(), document, chunks, seconds)
        bench.warm_up()
        for r in range(rounds):
            bench.round(r)
    return summarise(bench, out_dir, threads, lanes)


def _order(round_: int, sides: list[str]) -> list[str]:
    k = round_ % len(sides)
    return sides[k:] + sides[:k]


def _median(ms: list[Measured], what: Callable[[Measured], float]) -> float:
    return report.median([what(m) for m in ms])


def _cpu(ms: list[Measured]) -> dict[str, float]:
    return {p: _median(ms, lambda m, p=p: m.cpu_ms[p]) for p in ("worker", "valkey", "driver")}


def _query_figures(results: dict[str, list[Measured]], rate: dict[str, float]
                   ) -> tuple[dict[str, float], list[list[object]], list[list[object]]]:
    figures: dict[str, float] = {}
    rows: list[list[object]] = []
    cpu_rows: list[list[object]] = []
    batch32 = rate["q32_offline"]
    for c in LEVELS:
        figures[f"c{c}_offline_batch{c}_per_s"] = rate[f"q{c}_offline"]
        figures[f"c{c}_offline_cpu_ms_per_text"] = _median(results[f"q{c}_offline"],
                                                           lambda m: m.cpu_ms["bench"])
        for name in ("before", "after", "eager"):
            key = f"q{c}_{name}"
            figures[f"c{c}_{name}_per_s"] = rate[key]
            figures[f"c{c}_{name}_vs_offline_batch32"] = rate[key] / batch32
            figures[f"c{c}_{name}_vs_offline_batch{c}"] = rate[key] / rate[f"q{c}_offline"]
            figures[f"c{c}_{name}_mean_batch"] = _median(results[key], lambda m: m.batch)
            cpu = _cpu(results[key])
            figures.update({f"c{c}_{name}_cpu_ms_per_job_{p}": v for p, v in cpu.items()})
            cpu_rows.append([c, name, f"{cpu['worker']:.1f}", f"{cpu['valkey']:.2f}",
                             f"{cpu['driver']:.2f}"])
        rows.append([c, f"{rate[f'q{c}_offline']:.1f}", f"{batch32:.1f}",
                     *(f"{rate[f'q{c}_{n}']:.1f} ({rate[f'q{c}_{n}'] / batch32:.2f}; "
                       f"{figures[f'c{c}_{n}_mean_batch']:.1f})"
                       for n in ("before", "after", "eager"))])
    figures["c32_instant_model_per_s"] = rate["q32_instant"]
    icpu = _cpu(results["q32_instant"])
    figures.update({f"c32_instant_model_cpu_ms_per_job_{p}": v for p, v in icpu.items()})
    cpu_rows.append([32, "instant model", f"{icpu['worker']:.1f}", f"{icpu['valkey']:.2f}",
                     f"{icpu['driver']:.2f}"])
    # What the machine's cores pay per embedding: on cores that every process shares, the
    # throughput ratio follows this one.
    figures["c32_cpu_ratio"] = figures["c32_offline_cpu_ms_per_text"] / (
        figures["c32_after_cpu_ms_per_job_worker"] + figures["c32_after_cpu_ms_per_job_valkey"])
    return figures, rows, cpu_rows


def _ingest_figures(results: dict[str, list[Measured]], rate: dict[str, float]
                    ) -> tuple[dict[str, float], list[list[object]]]:
    figures: dict[str, float] = {}
    rows: list[list[object]] = []
    for c in DOC_LEVELS:
        off = rate[f"d{c}_offline"]
        figures[f"ingest_c{c}_offline_chunks_per_s"] = off
        for name in ("before", "after"):
            key = f"d{c}_{name}"
            figures[f"ingest_c{c}_{name}_chunks_per_s"] = rate[key]
            figures[f"ingest_c{c}_{name}_vs_offline"] = rate[key] / off
            figures[f"ingest_c{c}_{name}_cpu_ms_per_doc_worker"] = _median(
                results[key], lambda m: m.cpu_ms["worker"])
        rows.append([c, f"{off:.1f}", *(f"{rate[f'd{c}_{n}']:.1f} ({rate[f'd{c}_{n}'] / off:.2f})"
                                        for n in ("before", "after"))])
    return figures, rows


def summarise(bench: Bench, out_dir: Path, threads: int, lanes: int) -> dict[str, Any]:
    results = bench.results
    rate = {k: _median(v, lambda m: m.rate) for k, v in results.items()}
    figures, rows, cpu_rows = _query_figures(results, rate)
    ingest_figures, doc_rows = _ingest_figures(results, rate)
    figures.update(ingest_figures)
    for name, latencies in bench.mixed.items():
        figures[f"mixed_{name}_query_p50_ms"] = report.pct(latencies, 50)
        figures[f"mixed_{name}_query_p95_ms"] = report.pct(latencies, 95)
    c32 = figures["c32_after_vs_offline_batch32"]
    ingest = figures[f"ingest_c{DOC_LEVELS[-1]}_after_vs_offline"]
    goals = [report.goal("embed-query jobs/s at 32 concurrent / offline batch-32 encode",
                         c32, ">= 0.80", c32 >= 0.8,
                         f"before: {figures['c32_before_vs_offline_batch32']:.2f}; CPU ratio "
                         f"{figures['c32_cpu_ratio']:.2f}"),
             report.goal(f"ingestion chunks/s, {DOC_LEVELS[-1]} documents at once / offline",
                         ingest, ">= 0.80", ingest >= 0.8)]
    labels = [f"queries c={c}" for c in LEVELS] + [f"ingest c={c}" for c in DOC_LEVELS]
    keys = [f"q{c}" for c in LEVELS] + [f"d{c}" for c in DOC_LEVELS]
    plot = report.bar_plot(
        out_dir / "embedder_throughput.png", "Embedder throughput (texts or chunks per second)",
        labels, {"offline encode": [rate[f"{k}_offline"] for k in keys],
                 "before (1 lane)": [rate[f"{k}_before"] for k in keys],
                 f"after ({lanes} lanes, batched)": [rate[f"{k}_after"] for k in keys]},
        ylabel="per second")
    return {"title": "Embedder batching", "figures": figures, "goals": goals, "plots": [plot],
            "markdown": _markdown(figures, rows, cpu_rows, doc_rows, threads, lanes,
                                  len(bench.chunks))}


def _markdown(f: dict[str, float], rows: list[list[object]], cpu_rows: list[list[object]],
              doc_rows: list[list[object]], threads: int, lanes: int, doc_chunks: int) -> str:
    mixed = [[n, f"{f[f'mixed_{n}_query_p50_ms']:.0f}", f"{f[f'mixed_{n}_query_p95_ms']:.0f}"]
             for n in ("before", "after")]
    return (
        f"Real embedder workers (`python -m services.embedder`, bundled MiniLM) on Valkey, "
        f"driven at the stage level with C embed-query jobs outstanding; offline: `encode` on "
        f"batches in the bench process, with the traced transformer as the after worker runs "
        f"it (alone, traced and eager encode at the same speed). Workers and offline side use "
        f"{threads} torch thread(s). Before: 1 lane, eager model (the embedder as it was); "
        f"after: {lanes} lanes, dynamic batching, traced transformer (the defaults); after, "
        f"eager model: the same without the trace. Medians of rounds that alternate the "
        f"sides.\n\n"
        + report.table(["C", "offline batch-C /s", "offline batch-32 /s",
                        "before /s (vs batch-32; mean batch)",
                        "after /s (vs batch-32; mean batch)",
                        "after, eager model /s (vs batch-32; mean batch)"], rows)
        + "\n\nCPU per embed-query job (ms), by process. Offline, the model alone takes "
        f"{f['c1_offline_cpu_ms_per_text']:.1f} ms per text one at a time and "
        f"{f['c32_offline_cpu_ms_per_text']:.1f} ms in batches of 32. 'instant model': the "
        f"after worker's code ({lanes} lanes, batching, the real tasks, RQ) over an instant "
        f"stand-in model, i.e. what a job costs without the model; it ran "
        f"{f['c32_instant_model_per_s']:.0f} jobs/s at C=32.\n\n"
        + report.table(["C", "side", "embedder worker", "valkey", "driver (this bench)"],
                       cpu_rows)
        + f"\n\nCPU ratio at C=32 (offline CPU per text / worker + Valkey CPU per job): "
        f"{f['c32_cpu_ratio']:.2f}. Where every process gets a share of busy cores, the "
        "throughput ratio cannot beat it; on idle cores the queue work can partly overlap "
        "the model, up to one core (the worker's lanes share one interpreter lock)."
        + f"\n\nIngestion: the handbook's text files as one document of {doc_chunks} chunks, "
        "C documents outstanding, chunks per second (ratio to offline `encode` of the same "
        "chunks in batches of 32):\n\n"
        + report.table(["C", "offline chunks/s", "before", "after"], doc_rows)
        + f"\n\nQuestions beside documents: {MIXED_QUERIES} questions and one document "
        "outstanding at all times; each question's embed stage (queue wait + work, from its "
        "record), ms:\n\n" + report.table(["", "p50", "p95"], mixed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    parser.add_argument("--lanes", type=int, default=None, help="lanes of the batched worker")
    parser.add_argument("--out", type=Path, default=Path("reports/bench"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    section = run(args.out, args.quick, args.threads, args.lanes)
    report.write(args.out, [section], name="embedder")
    print(report.markdown([section]))


if __name__ == "__main__":
    main()
