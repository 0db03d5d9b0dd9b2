"""`./dev status` / `python -m ops status`: the operator's command line.

Settings come from a local.settings.json-shaped file (`--settings`) or from the process environment
(`--env`) and are validated by the app's own `shared.settings` (an error names the setting); clients
are the app's own (`shared.runtime.build_service`: keys locally, DefaultAzureCredential in Azure).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from azure.core.exceptions import AzureError, ServiceRequestError
from rich.console import Console
from rich.text import Text

from shared.ledger import State
from shared.log import scrub
from shared.runtime import build_service

from .queries import LedgerReader
from .rendering import Output, show_failures, show_files, show_pool, show_resubmits
from .reports import failures_report, files_report, pool_report
from .resubmit import Resubmitter, ResubmitOutcome, select_candidates
from .settings import LOCAL_SETTINGS, SAMPLE_SETTINGS, StatusError, load_settings

EXIT_OK = 0
EXIT_INCOMPLETE = 1   # resubmit: some files were not resubmitted; or the service could not be reached
EXIT_USAGE = 2        # bad arguments or settings

DEFAULT_LIMIT = 50
PROG = "./dev status"


def _common_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    # Subparsers repeat the global options with SUPPRESS defaults so `status files --json` and
    # `status --json files` both work without the subparser resetting the global value.
    default: dict[str, Any] = {"default": argparse.SUPPRESS} if suppress else {}
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--settings", metavar="PATH", help=(
        f"a {LOCAL_SETTINGS}-shaped file (default: ./{LOCAL_SETTINGS}, else ./{SAMPLE_SETTINGS})"),
        **({"default": argparse.SUPPRESS} if suppress else {"default": None}))
    source.add_argument("--env", action="store_true", help="read settings from the environment (app settings in Azure)",
                        **default)
    parser.add_argument("--json", action="store_true", help="print JSON for scripts", **default)


def _limit(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 (all) or more")
    return value


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="The service's state for operators: per-file status from the ledger, "
        "the Batch pool, failures with reasons, and resubmitting failed inputs. Works against the local stack "
        "and, with --env or --settings, against Azure.")
    _common_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, description=help_text)

    files = command("files", "per-file status from the ledger (newest first) and counts per state")
    files.add_argument("--state", choices=[s.value for s in State], help="only files in this state")
    files.add_argument("--name-prefix", metavar="P", help="only input names starting with P")
    files.add_argument("--limit", metavar="N", type=_limit, default=DEFAULT_LIMIT,
                       help=f"show at most N files (default {DEFAULT_LIMIT}; 0 = all); counts cover all")

    pool = command("pool", "pool allocation, autoscale, node and task counts, the timer's status row")

    failures = command("failures", "failed and rejected files: category, exit code, message, log location")
    failures.add_argument("--limit", metavar="N", type=_limit, default=0, help="show at most N (default all)")

    resubmit = command("resubmit", "run failed inputs again: same blob version, same task id, a fresh task spec")
    # Not a mutually exclusive group: argparse counts an absent nargs='*' positional as present.
    resubmit.add_argument("--all-failed", action="store_true", help="every file in state failed")
    resubmit.add_argument("names", nargs="*", default=[], metavar="NAME", help="input blob names or task ids")
    resubmit.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")

    for sub in (files, pool, failures, resubmit):
        _common_options(sub, suppress=True)
    return parser


def _confirm(question: str, err: Console) -> bool:
    err.print(Text(question + " [y/N] "), end="")
    try:
        answer = input()
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def run(args: argparse.Namespace, out: Output, err: Console, env: Mapping[str, str], cwd: Path) -> int:
    loaded = load_settings(use_env=args.env, settings_path=args.settings, env=env, cwd=cwd)
    settings = loaded.settings
    service = build_service(settings)
    reader = LedgerReader(service.ledger)
    if args.command == "files":
        state = State(args.state) if args.state else None
        show_files(out, files_report(reader, state, args.name_prefix, args.limit), settings)
        return EXIT_OK
    if args.command == "pool":
        show_pool(out, pool_report(service, reader))
        return EXIT_OK
    if args.command == "failures":
        show_failures(out, failures_report(service, reader, args.limit))
        return EXIT_OK
    # resubmit
    if args.all_failed == bool(args.names):
        raise StatusError("resubmit needs either --all-failed or one or more NAMEs")
    candidates = select_candidates(reader, args.names, args.all_failed)
    if not candidates:
        if out.as_json:
            out.json({"results": []})
        else:
            out.line("no failed files to resubmit", "green")
        return EXIT_OK
    runnable = [c.entry for c in candidates if c.entry is not None and c.entry.state == State.FAILED]
    if runnable and not args.yes:
        listing = "\n".join(f"  {scrub(row.input_name)}" for row in runnable)
        err.print(Text(f"will resubmit {len(runnable)} failed file(s) from {loaded.source}:\n{listing}"))
        if not _confirm("resubmit them?", err):
            err.print(Text("nothing resubmitted"))
            return EXIT_INCOMPLETE
    resubmitter = Resubmitter(service)
    results = [resubmitter.run(c) for c in candidates]
    show_resubmits(out, results)
    return EXIT_OK if all(r.outcome is ResubmitOutcome.RESUBMITTED for r in results) else EXIT_INCOMPLETE


def main(argv: list[str] | None = None, *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
         stdout: IO[str] | None = None, stderr: IO[str] | None = None, prog: str = PROG) -> int:
    """Entry point for `./dev status` and `python -m ops status`; returns the exit code."""
    parser = build_parser(prog)
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # --help or a usage error: argparse already printed
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE
    out = Output(stdout or sys.stdout, args.json)
    err = Console(file=stderr or sys.stderr, highlight=False, soft_wrap=True)
    try:
        return run(args, out, err, os.environ if env is None else env, Path.cwd() if cwd is None else cwd)
    except StatusError as exc:
        err.print(Text(f"error: {scrub(str(exc))}", style="red"))
        return EXIT_USAGE
    except ServiceRequestError as exc:
        err.print(Text(f"error: cannot reach the service ({scrub(str(exc))}); "
                       "locally, is the stack running (./dev start)?", style="red"))
        return EXIT_INCOMPLETE
    except AzureError as exc:
        err.print(Text(f"error: {type(exc).__name__}: {scrub(str(exc))}", style="red"))
        return EXIT_INCOMPLETE
