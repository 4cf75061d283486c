"""The `ragmesh` command: up, ingest, ask, feedback, eval, demo, models."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ragmesh.client import ApiError, Client

console = Console()
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SUPPORTED = {".txt", ".md", ".markdown", ".html", ".htm", ".pdf"}


def _settings() -> Any:
    from shared.settings import Settings  # noqa: PLC0415

    return Settings()


def _connection(settings: Any) -> tuple[str, str]:
    """Where the API is and which key to send: settings first, then what `up` wrote down."""
    state = settings.state_dir.resolve()
    url = settings.api_url
    if not url and (state / "api_url").exists():
        url = (state / "api_url").read_text().strip()
    url = url or settings.cli_api_url
    if settings.api_key:
        key = settings.api_key.get_secret_value()
    elif settings.api_keys:
        key = settings.api_keys[0].get_secret_value()
    elif (state / "api_key").exists():
        key = (state / "api_key").read_text().strip()
    else:
        raise SystemExit("no API key: set RAGMESH_API_KEY, or start the mesh with `ragmesh up`")
    return url, key


# --- up / demo ---------------------------------------------------------------------------------
def _start_mesh(settings: Any) -> Any:
    from ragmesh.mesh import Mesh  # noqa: PLC0415

    mesh = Mesh(settings, report=lambda line: console.print(f"[dim]•[/dim] {line}"))
    with console.status("starting the mesh (the engine takes a minute or two to load)…"):
        mesh.start()
    (mesh.state_dir / "api_url").write_text(mesh.api_url)
    return mesh


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def cmd_up(args: argparse.Namespace) -> int:
    # Ctrl-C and a service manager's SIGTERM both stop the mesh cleanly, also when the shell
    # that started us in the background set SIGINT to be ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    settings = _settings()
    mesh = _start_mesh(settings)
    console.print(f"\n[bold green]ragmesh is up[/bold green] at [bold]{mesh.api_url}[/bold]")
    console.print(f"API key: [bold]{mesh.api_key}[/bold]")
    console.print('Try: ragmesh ingest examples/handbook && ragmesh ask "How many days of '
                  'annual leave do I get?"\nCtrl-C stops every process.')
    try:
        mesh.supervise()
    except KeyboardInterrupt:
        console.print("\nstopping…")
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/red]")
        return 1
    finally:
        mesh.stop()
        (mesh.state_dir / "api_url").unlink(missing_ok=True)
    console.print("stopped.")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    settings = _settings()
    mesh = _start_mesh(settings)
    try:
        with Client(mesh.api_url, mesh.api_key) as client:
            _ingest(client, [EXAMPLES / "handbook"], collection=None)
            questions = (EXAMPLES / "demo-questions.txt").read_text().splitlines()
            for question in [q.strip() for q in questions if q.strip()]:
                console.rule(f"[bold]{question}")
                _print_answer(client.ask(question))
    finally:
        with console.status("stopping the mesh…"):
            mesh.stop()
    return 0


# --- ingest ------------------------------------------------------------------------------------
def _files(paths: Sequence[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in SUPPORTED)
        elif path.exists():
            found.append(path)
        else:
            raise SystemExit(f"{path}: no such file or folder")
    return found


_COLUMNS = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn())


def _ingest(client: Client, paths: Sequence[Path], collection: str | None) -> int:
    files = _files(paths)
    ids: dict[str, Path] = {}
    indexed = 0
    with Progress(*_COLUMNS, console=console) as progress:
        task = progress.add_task("uploading", total=len(files))
        for path in files:
            try:
                ids[client.upload(path, collection=collection)["id"]] = path
            except ApiError as exc:
                progress.console.print(f"[red]{path}: {exc}[/red]")
            progress.advance(task)
        task = progress.add_task("indexing", total=len(ids))
        for doc in client.wait_documents(list(ids)):
            progress.advance(task)
            if doc["status"] == "indexed":
                indexed += 1
            else:
                progress.console.print(f"[red]{ids[doc['id']]}: {doc['status']} "
                                       f"{doc.get('error')}[/red]")
    console.print(f"indexed {indexed} of {len(files)} file(s)")
    return 0 if indexed == len(files) else 1


def cmd_ingest(args: argparse.Namespace) -> int:
    url, key = _connection(_settings())
    with Client(url, key) as client:
        return _ingest(client, [Path(p) for p in args.paths], args.collection)


# --- ask ---------------------------------------------------------------------------------------
def _print_answer(view: dict[str, Any]) -> None:
    status = view["status"]
    colour = "green" if status == "succeeded" else "red"
    console.print(f"[bold]{view.get('answer') or '(no answer)'}[/bold]")
    if view.get("error"):
        console.print(f"[{colour}]{status}: {view['error']['code']}: "
                      f"{view['error']['message']}[/{colour}]")
    for c in view.get("citations", []):
        mark = "*" if c.get("cited") else " "
        console.print(f" {mark}[{c['index']}] {c['source']}  (score {c['score']:.2f}, "
                      f"chunk {c['chunk_id']})")
    if view.get("trust_score") is not None:
        low = view.get("low_trust")
        console.print(f"trust {view['trust_score']:.2f}" + (
            " [yellow](low: check the answer against its sources)[/yellow]" if low else ""))
    timings = ", ".join(f"{k} {v:.0f} ms" for k, v in view.get("timings_ms", {}).items())
    usage = view.get("usage", {})
    console.print(f"[dim]{timings}; tokens: {usage.get('prompt_tokens', 0)} prompt, "
                  f"{usage.get('completion_tokens', 0)} completion; query {view.get('id')} "
                  f"(rate it: ragmesh feedback {view.get('id')} up|down)[/dim]")


def cmd_ask(args: argparse.Namespace) -> int:
    url, key = _connection(_settings())
    params = {k: v for k, v in {"top_k": args.top_k, "collection": args.collection}.items()
              if v is not None}
    with Client(url, key) as client, console.status("thinking…"):
        view = client.ask(args.question, **params)
    if args.json:
        import json  # noqa: PLC0415

        print(json.dumps(view, indent=2))
    else:
        _print_answer(view)
    return 0 if view["status"] == "succeeded" else 1


def cmd_feedback(args: argparse.Namespace) -> int:
    url, key = _connection(_settings())
    with Client(url, key) as client:
        client.feedback(args.query_id, args.rating, args.comment)
    console.print(f"thanks: {args.query_id} rated {args.rating}")
    return 0


# --- eval --------------------------------------------------------------------------------------
EXPORT_REVIEW = "export-review"


def _print_report(report: dict[str, Any], paths: dict[str, Path]) -> None:
    from ragmesh.eval_report import SHOWN, fmt, label  # noqa: PLC0415
    from ragmesh.evaluate import regressions  # noqa: PLC0415

    compared = {m["metric"]: m for m in (report["comparison"] or {}).get("metrics", [])}
    table = Table("metric", "value", "baseline", "change", title=report["dataset"]["path"])
    for name in SHOWN:
        c = compared.get(name)
        change = "" if c is None or c["delta"] is None else f"{c['delta']:+.3f}"
        style = "red" if c and c["regressed"] else None
        table.add_row(label(name), fmt(report["metrics"].get(name)),
                      fmt(c["baseline"]) if c else "", change, style=style)
    console.print(table)
    console.print("reports: " + ", ".join(str(p) for p in paths.values()))
    for m in regressions(report):
        console.print(f"[red]{label(m['metric'])} dropped: {fmt(m['baseline'])} -> "
                      f"{fmt(m['current'])} (tolerance {report['comparison']['tolerance']})"
                      "[/red]")


def _export_review(args: argparse.Namespace) -> int:
    from ragmesh.evaluate import draft_cases, write_jsonl  # noqa: PLC0415

    url, key = _connection(_settings())
    with Client(url, key) as client:
        body = client.review(limit=args.limit)
    lines = draft_cases(body["items"])
    out = Path(args.out or "review-draft.jsonl")
    write_jsonl(lines, out)
    console.print(f"wrote {len(lines)} question(s) to label to {out} (from {body['total']} "
                  "answer(s) kept for review): fill in expected_sources and answer_contains, "
                  "then add the lines to your set")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    if args.dataset == EXPORT_REVIEW:
        return _export_review(args)
    import json  # noqa: PLC0415

    from ragmesh import eval_report, evaluate  # noqa: PLC0415

    dataset = Path(args.dataset)
    try:
        cases = evaluate.load_dataset(dataset)
        compared = evaluate.metric_names(args.compare)
        baseline = json.loads(Path(args.baseline).read_text()) if args.baseline else None
    except (OSError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    url, key = _connection(_settings())
    started, clock = datetime.now(UTC), time.monotonic()
    with Client(url, key) as client:
        ready, why = client.ready()
        if not ready:
            console.print(f"[red]the mesh at {url} is not ready: {why}[/red]")
            return 2

        def ask(case: Any) -> dict[str, Any]:
            params = {"top_k": args.top_k, "collection": case.collection}
            return client.ask(case.question, timeout=args.timeout,
                              **{k: v for k, v in params.items() if v is not None})

        with Progress(*_COLUMNS, console=console) as progress:
            task = progress.add_task("asking", total=len(cases))
            rows = evaluate.run_cases(ask, cases, args.concurrency,
                                      on_done=lambda *_: progress.advance(task))
    run = {"api_url": url, "top_k": args.top_k, "concurrency": args.concurrency,
           "started_at": started.isoformat(timespec="seconds"),
           "duration_s": round(time.monotonic() - clock, 1), "label": args.label}
    report = evaluate.build_report(rows, dataset=dataset, run=run, baseline=baseline,
                                   baseline_path=args.baseline, compared=compared,
                                   tolerance=args.tolerance)
    out = Path(args.out or f"reports/{dataset.stem}-{started:%Y%m%dT%H%M%SZ}")
    _print_report(report, eval_report.write(report, out))
    return 1 if evaluate.regressions(report) else 0


def cmd_models(args: argparse.Namespace) -> int:
    from ragmesh.mesh import default_model_dir  # noqa: PLC0415
    from ragmesh.models import is_complete, prepare_smollm2  # noqa: PLC0415

    target = default_model_dir(_settings().state_dir.resolve())
    if is_complete(target):
        console.print(f"SmolLM2-135M-Instruct is ready in {target}")
        return 0
    with console.status("converting SmolLM2-135M-Instruct from GGUF to safetensors…"):
        prepare_smollm2(target)
    console.print(f"SmolLM2-135M-Instruct is ready in {target}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ragmesh", description="Ask your documents, with "
                                     "cited sources.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the whole mesh on the embedded default").set_defaults(
        func=cmd_up)
    sub.add_parser("demo", help="start the mesh, ingest the sample handbook, ask, stop"
                   ).set_defaults(func=cmd_demo)
    ingest = sub.add_parser("ingest", help="upload files or folders (.txt .md .html .pdf)")
    ingest.add_argument("paths", nargs="+")
    ingest.add_argument("--collection")
    ingest.set_defaults(func=cmd_ingest)
    ask = sub.add_parser("ask", help="ask a question and print the answer with its sources")
    ask.add_argument("question")
    ask.add_argument("--top-k", type=int)
    ask.add_argument("--collection")
    ask.add_argument("--json", action="store_true", help="print the raw result")
    ask.set_defaults(func=cmd_ask)
    feedback = sub.add_parser("feedback", help="rate an answer up or down")
    feedback.add_argument("query_id")
    feedback.add_argument("rating", choices=["up", "down"])
    feedback.add_argument("--comment")
    feedback.set_defaults(func=cmd_feedback)
    _eval_parser(sub)
    models = sub.add_parser("models", help="prepare the local engine's model (SmolLM2)")
    models.set_defaults(func=cmd_models)
    return parser


def _eval_parser(sub: Any) -> None:
    ev = sub.add_parser(
        "eval", help="measure answer quality on a labeled set, or export answers to review",
        description="`ragmesh eval DATASET`: ask every question of a JSON Lines set through the "
        "running API and report retrieval hit@1, recall@k, MRR, answer and abstention shares, "
        "trust and latency (report.json, report.md, report.png). `ragmesh eval export-review`: "
        "write the answers kept for review (low trust, rated down) as a dataset draft.")
    ev.add_argument("dataset", metavar="DATASET|export-review",
                    help="the labeled set (.jsonl), or export-review")
    ev.add_argument("--baseline", metavar="FILE", help="an earlier report.json: exit 1 when a "
                    "compared metric dropped by more than --tolerance")
    ev.add_argument("--tolerance", type=float, default=0.02,
                    help="allowed drop, in absolute points of a share (default 0.02)")
    ev.add_argument("--compare", default="all", help="what the baseline gates: retrieval, "
                    "answers, all (default) or metric names, comma-separated")
    ev.add_argument("--out", help="report folder (default reports/<set>-<time>); with "
                    "export-review, the draft file (default review-draft.jsonl)")
    ev.add_argument("--top-k", type=int, help="passages per question (default: the server's)")
    ev.add_argument("--concurrency", type=int, default=1, help="questions in flight; latency "
                    "figures include queueing when above the mesh's workers (default 1)")
    ev.add_argument("--timeout", type=float, default=600.0, help="seconds per question")
    ev.add_argument("--label", help="a note kept in the report, e.g. the settings under test")
    ev.add_argument("--limit", type=int, default=1000,
                    help="export-review: at most this many answers, newest first")
    ev.set_defaults(func=cmd_eval)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ApiError as exc:
        console.print(f"[red]{exc}[/red]")
        return 1


if __name__ == "__main__":
    sys.exit(main())
