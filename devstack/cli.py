"""`./dev <command>`: the local stack's commands (see README)."""
from __future__ import annotations

import argparse
import subprocess
import sys

from devstack import stack


def cmd_test(extra: list[str]) -> int:
    """Run the whole test suite; fixtures start their own Azurite and emulator on free ports."""
    return subprocess.call([sys.executable, "-m", "pytest", *extra], cwd=stack.ROOT)


def cmd_start(extra: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="./dev start", description="start the local stack in the background")
    parser.add_argument("--no-host", action="store_true",
                        help="Azurite and the Batch emulator only: run the app yourself with Azure Functions Core "
                             "Tools (`func start`, README \"Azure Functions Core Tools\")")
    parser.add_argument("--scale-mode", action="store_true",
                        help="the Batch emulator simulates tasks instead of running ffmpeg (its README \"Scale mode\"; "
                             "tune with BATCH_EMULATOR_SIMULATED_* variables)")
    args = parser.parse_args(extra)
    if args.no_host and any(c.name == "devhost" for c in stack.running()):
        print("the dev host is running and would serve the app a second time on port 7071: ./dev stop first",
              file=sys.stderr)
        return 1
    scale = {"BATCH_EMULATOR_TASK_EXECUTION": "simulate"} if args.scale_mode else None
    if scale and any(c.name == "batch-emulator" for c in stack.running()):
        print("the Batch emulator is already running (not in scale mode unless it was started so): ./dev stop first",
              file=sys.stderr)
        return 1
    components = stack.start(with_host=not args.no_host, emulator_settings=scale)
    for c in components:
        print(f"{c.name:15} pid {c.pid:<7} port {c.port:<6} log {c.log}")
    if args.no_host:
        print("no dev host: run `func start` here with .venv active (README \"Azure Functions Core Tools\")")
    if any(c.name == "devhost" for c in components):
        key = stack.webhook_key(stack.ensure_local_settings())
        print(f"Event Grid webhook: POST {stack.webhook_url()}&code=<key>  (header aeg-event-type: Notification)")
        print(f"blobs_extension key: {key.value}  (from {key.source}; test.http's @code)")
    print("stack is running; stop it with ./dev stop")
    return 0


def cmd_stop(_: list[str]) -> int:
    names = stack.stop()
    print("stopped: " + (", ".join(names) if names else "nothing was running"))
    return 0


def cmd_ps(_: list[str]) -> int:
    components = stack.running()
    if not components:
        print("the local stack is not running (start it with ./dev start or ./dev run)")
    for c in components:
        print(f"{c.name:15} pid {c.pid:<7} port {c.port:<6} log {c.log}")
    return 0


def cmd_run(_: list[str]) -> int:
    from devstack import demo  # imports the app's package; only needed here

    return demo.run()


def cmd_status(extra: list[str]) -> int:
    from ops import commands  # the operator tools (a product package); imports the app's package

    return commands.main(extra)


def cmd_submit(extra: list[str]) -> int:
    from ops import producer_cli  # the producer command (a product package)

    return producer_cli.main("submit", extra, prog="./dev submit")


def cmd_events(extra: list[str]) -> int:
    from ops import producer_cli

    return producer_cli.main("events", extra, prog="./dev events")


def cmd_bench(extra: list[str]) -> int:
    return subprocess.call([sys.executable, "-m", "bench.run", *extra], cwd=stack.ROOT)


COMMANDS = {
    "run": (cmd_run, "start the stack, upload sample MP4s and show their conversion live"),
    "bench": (cmd_bench, "run the benchmarks, write bench/results/ (./dev bench --help)"),
    "test": (cmd_test, "run the test suite (extra arguments go to pytest)"),
    "start": (cmd_start, "start Azurite, the Batch emulator and the dev Functions host in the background "
                         "(--no-host: without the dev host, for `func start`)"),
    "stop": (cmd_stop, "stop the local stack"),
    "ps": (cmd_ps, "show which parts of the local stack are running"),
    "status": (cmd_status, "operators' view of the ledger and pool (./dev status --help)"),
    "submit": (cmd_submit, "upload files with per-file options, wait for their outcomes, fetch the MP3s "
                           "(./dev submit --help)"),
    "events": (cmd_events, "print completion events from the events queue (./dev events --help)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="./dev", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(f"  {n:8} {h}" for n, (_, h) in COMMANDS.items()))
    parser.add_argument("command", choices=COMMANDS, metavar="command")
    if not argv or argv[0] in ("-h", "--help", "help"):
        parser.print_help()
        return 0
    args, extra = parser.parse_known_args(argv[:1])
    return COMMANDS[args.command][0](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
