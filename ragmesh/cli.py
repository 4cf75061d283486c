"""The `ragmesh` command: up, ingest, ask, demo, models."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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


def _ingest(client: Client, paths: Sequence[Path], collection: str | None) -> int:
    files = _files(paths)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    ids: dict[str, Path] = {}
    indexed = 0
    with Progress(*columns, console=console) as progress:
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
    timings = ", ".join(f"{k} {v:.0f} ms" for k, v in view.get("timings_ms", {}).items())
    usage = view.get("usage", {})
    console.print(f"[dim]{timings}; tokens: {usage.get('prompt_tokens', 0)} prompt, "
                  f"{usage.get('completion_tokens', 0)} completion[/dim]")


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
    models = sub.add_parser("models", help="prepare the local engine's model (SmolLM2)")
    models.set_defaults(func=cmd_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ApiError as exc:
        console.print(f"[red]{exc}[/red]")
        return 1


if __name__ == "__main__":
    sys.exit(main())
