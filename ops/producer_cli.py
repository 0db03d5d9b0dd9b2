"""`python -m ops submit ...` / `python -m ops events ...` (locally `./dev submit`, `./dev events`): the producer's
command line. Same settings as the operator CLI (`--settings FILE`, default ./local.settings.json; `--env` for the
app settings in the environment, identity-based in Azure via `az login`).

    submit PATH... [--prefix P] [--option key=value...] [--wait] [--out DIR] [--timeout S] [--json]
    events [--follow] [--json] [--peek]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor, wait as wait_futures
from pathlib import Path
from typing import IO

from azure.core.exceptions import AzureError, ResourceNotFoundError
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from shared.log import scrub
from shared.runtime import build_service

from . import producer
from .producer import ProducerError, Result, Summary
from .settings import StatusError, load_settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _AmountColumn(ProgressColumn):
    """"12.3/45.6 MB" for the bytes bar, "3/5" for the file counts."""

    def render(self, task: Task) -> Text:
        if task.fields.get("unit") == "bytes":
            return Text(f"{task.completed / 1e6:.1f}/{(task.total or 0) / 1e6:.1f} MB")
        return Text(f"{int(task.completed)}/{int(task.total or 0)}")


def _settings_options(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--settings", metavar="PATH", default=None,
                        help="a local.settings.json-shaped file (default: ./local.settings.json, else the sample)")
    source.add_argument("--env", action="store_true", help="read settings from the environment (Azure)")
    parser.add_argument("--json", action="store_true", help="JSON output (one line per event for `events`)")


def submit_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=(
        "Upload files to the input container (concurrently, with a progress bar); with --wait, wait for each "
        "file's completion event (or its ledger row without an events queue), download the MP3s into --out and "
        "print a summary. Exit status 1 when any file failed or was rejected."))
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (a folder's files keep their paths)")
    parser.add_argument("--prefix", metavar="P", help="a folder in the input container to upload under")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="per-file option as blob metadata: mp3_bitrate=128k | mp3_quality=0..9 | "
                             "mp3_channels=1|2 | mp3_samplerate=44100 | mp3_loudnorm=true")
    parser.add_argument("--wait", action="store_true", help="wait for every file's outcome")
    parser.add_argument("--out", metavar="DIR", help="with --wait: download the MP3s here")
    parser.add_argument("--timeout", metavar="S", type=float, default=1800.0,
                        help="with --wait: give up waiting after S seconds (default 1800)")
    _settings_options(parser)
    return parser


def events_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=(
        "Print completion events from the events queue as they arrive, and remove them from it (a storage "
        "queue has one consumer; --peek looks at the first 32 without removing anything)."))
    parser.add_argument("--follow", "-f", action="store_true", help="keep waiting for new events (Ctrl-C stops)")
    parser.add_argument("--peek", action="store_true", help="show the first 32 events without removing them")
    _settings_options(parser)
    return parser


def _service(args: argparse.Namespace, env: Mapping[str, str], cwd: Path):
    loaded = load_settings(use_env=args.env, settings_path=args.settings, env=env, cwd=cwd)
    return build_service(loaded.settings)


def run_submit(args: argparse.Namespace, out: IO[str], err: Console, env: Mapping[str, str], cwd: Path) -> int:
    if args.out and not args.wait:
        raise ProducerError("--out needs --wait (the MP3s are downloaded when their files are done)")
    metadata = producer.parse_options(args.option)
    uploads = producer.plan(args.paths, args.prefix)
    if not uploads:
        raise ProducerError("nothing to upload")
    service = _service(args, env, cwd)
    settings = service.settings
    uploader = producer.Uploader(service.clients.blob_service, settings.input_container, metadata)
    results = [Result(u) for u in uploads]
    total = sum(u.size for u in uploads)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), _AmountColumn(), TimeElapsedColumn(),
                        console=err, transient=False, disable=args.json)
    pool = ThreadPoolExecutor(max_workers=producer.UPLOAD_WORKERS)
    try:
        with progress:
            sent = progress.add_task(f"uploading {len(uploads)} file(s) to '{settings.input_container}'", total=total,
                                     unit="bytes")
            done_files = progress.add_task("uploaded", total=len(uploads))

            def one(result: Result) -> Result:
                uploader.upload(result, lambda n: progress.advance(sent, n))
                progress.advance(done_files)
                return result

            futures = [pool.submit(one, r) for r in results]
            wait_futures(futures)
            pool.shutdown()
            if args.wait:
                _wait(args, service, results, progress)
    except KeyboardInterrupt:
        flying = sorted(uploader.in_flight)
        uploader.cancel()    # uploads still sending stop at their next block, uncommitted
        pool.shutdown(wait=True, cancel_futures=True)
        _interrupted(err, results, flying, settings.input_container)
        return EXIT_INTERRUPTED
    if args.out:
        out_dir = Path(args.out)
        for result in results:
            producer.download(service.clients.blob_service, settings.output_container, result, out_dir, args.prefix)
    summary = Summary(results)
    _show(out, err, summary, args)
    if not args.wait:
        return EXIT_FAILED if any(r.error for r in results) else EXIT_OK
    return EXIT_FAILED if summary.failed else EXIT_OK


def _wait(args: argparse.Namespace, service, results: list[Result], progress: Progress) -> None:
    uploaded = [r for r in results if r.etag]
    converting = progress.add_task("done (outcome known)", total=len(uploaded))
    queue = service.clients.events_queue
    watcher = producer.QueueWatcher(queue, service.settings.input_container) if queue is not None \
        else producer.LedgerWatcher(service.ledger)
    producer.wait(watcher, uploaded, timeout=args.timeout, on_done=lambda _: progress.advance(converting))


def _interrupted(err: Console, results: list[Result], in_flight: list[str], container: str) -> None:
    """What Ctrl-C left: every name is either its new upload (committed) or exactly as it was - a block blob is
    committed in one request, and an upload stopped between blocks commits nothing."""
    by_name = {r.upload.blob_name: r for r in results}
    uploaded = [r.upload.blob_name for r in results if r.etag]
    stopped = [n for n in in_flight if not by_name[n].etag]
    finished = [n for n in in_flight if by_name[n].etag]
    not_started = [r.upload.blob_name for r in results if not r.etag and r.upload.blob_name not in in_flight]
    err.print(Text("interrupted.", style="yellow"))
    err.print(Text(f"  uploaded ({len(uploaded)}): their conversions go on in the service; outcomes come as events "
                   f"(./dev events) and in the ledger (./dev status files)"))
    if finished:
        err.print(Text(f"    of these, {len(finished)} completed while stopping: " +
                       ", ".join(scrub(n) for n in finished)))
    if stopped:
        err.print(Text(f"  in flight, stopped ({len(stopped)}): nothing committed - each name still holds what it "
                       f"had before in '{container}' (or does not exist):"))
        for name in stopped:
            err.print(Text(f"    {scrub(name)}"))
    err.print(Text(f"  not started ({len(not_started)}): nothing was sent for them"))


def _show(out: IO[str], err: Console, summary: Summary, args: argparse.Namespace) -> None:
    rows = [{"file": r.upload.blob_name, "outcome": r.outcome or ("upload failed" if r.error else
                                                                   ("uploaded" if not args.wait else "no outcome yet")),
             "reason": r.error or r.reason, "seconds": r.seconds, "event_id": r.event_id, "etag": r.etag,
             "mp3": str(r.downloaded) if r.downloaded else None} for r in summary.results]
    if args.json:
        out.write(json.dumps({"files": rows}, indent=2) + "\n")
        return
    table = Table(title="submitted files", title_justify="left")
    for column in ("file", "outcome", "reason", "seconds"):
        table.add_column(column, overflow="fold")
    styles = {"succeeded": "green", "failed": "red", "rejected": "red", "skipped": "yellow"}
    for row in rows:
        table.add_row(Text(scrub(row["file"])), Text(row["outcome"], style=styles.get(row["outcome"], "")),
                      Text(scrub(row["reason"] or "")), "" if row["seconds"] is None else f"{row['seconds']:.1f}")
    console = Console(file=out, highlight=False, soft_wrap=False, width=max(100, Console(file=out).width))
    console.print(table)
    if args.out:
        got = sum(1 for r in summary.results if r.downloaded)
        console.print(f"{got} MP3(s) in {args.out}")
    if args.wait:
        console.print(f"{len(summary.failed)} of {len(summary.results)} file(s) did not convert" if summary.failed
                      else f"all {len(summary.results)} file(s) done")


def run_events(args: argparse.Namespace, out: IO[str], err: Console, env: Mapping[str, str], cwd: Path) -> int:
    service = _service(args, env, cwd)
    queue = service.clients.events_queue
    if queue is None:
        raise ProducerError(f"EVENTS_SINK is {service.settings.events.sink.value}: there is no events queue to read "
                            "(outcomes are in the ledger: ./dev status files)")
    console = Console(file=out, highlight=False, soft_wrap=True)
    printed = 0
    try:
        while True:
            if args.peek:
                messages = list(queue.peek_messages(max_messages=32))
            else:
                messages = list(queue.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=30))
            for message in messages:
                _print_event(console, out, message.content, args.json)
                printed += 1
                if not args.peek:
                    queue.delete_message(message)
            if args.peek or (not args.follow and not messages):
                break
            if not messages:
                time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    except ResourceNotFoundError:
        raise ProducerError(f"the events queue '{service.settings.events.queue}' does not exist (yet): the app "
                            "creates it with its first event") from None
    if not args.json:
        err.print(Text(f"{printed} event(s)"))
    return EXIT_OK


def _print_event(console: Console, out: IO[str], content: str, as_json: bool) -> None:
    if as_json:
        out.write(content.strip() + "\n")
        out.flush()
        return
    try:
        event = json.loads(content)
        data = event.get("data") or {}
        outcome = data.get("outcome", "?")
        line = f"{event.get('time', '')}  {outcome:9}  {data.get('input', {}).get('name', '?')}"
        detail = (data.get("output") or {}).get("name") if outcome == "succeeded" else data.get("reason")
        console.print(Text(scrub(f"{line}  {detail or ''}  id={event.get('id')}")))
    except (ValueError, AttributeError):
        console.print(Text(scrub(f"(not a completion event) {content[:200]}")))


def main(command: str, argv: list[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
         stdout: IO[str] | None = None, stderr: IO[str] | None = None, prog: str | None = None) -> int:
    parser = (submit_parser if command == "submit" else events_parser)(prog or f"python -m ops {command}")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE
    out = stdout or sys.stdout
    err = Console(file=stderr or sys.stderr, highlight=False, soft_wrap=True)
    run = run_submit if command == "submit" else run_events
    try:
        return run(args, out, err, os.environ if env is None else env, Path.cwd() if cwd is None else cwd)
    except (ProducerError, StatusError) as exc:
        err.print(Text(f"error: {scrub(str(exc))}", style="red"))
        return EXIT_USAGE
    except AzureError as exc:
        err.print(Text(f"error: {type(exc).__name__}: {scrub(str(exc)).splitlines()[0]}; locally, is the stack "
                       "running (./dev start)?", style="red"))
        return EXIT_FAILED
