"""`python -m ops status|submit|events ...`: the same arguments as `./dev status|submit|events ...`, without the
dev tooling."""
from __future__ import annotations

import sys

from ops import commands, producer_cli

USAGE = ("usage: python -m ops {status,submit,events} [--help] ...\n\ntools:\n"
         "  status   the service's state for operators, and resubmit\n"
         "  submit   upload files (with per-file options), wait for their outcomes, download the MP3s\n"
         "  events   print completion events from the events queue\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["status"]:
        return commands.main(argv[1:], prog="python -m ops status")
    if argv[:1] in (["submit"], ["events"]):
        return producer_cli.main(argv[0], argv[1:])
    if argv[:1] in (["-h"], ["--help"]):
        sys.stdout.write(USAGE)
        return commands.EXIT_OK
    sys.stderr.write(USAGE)
    return commands.EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
