"""Stand-in for the Functions host's timer while function_app.py has no timer function registered.

`python -m bench.timer_loop SETTINGS_JSON EVERY_SECONDS` loads the settings file's Values into the
environment (as the host would) and calls the app's own tick (`shared.timer.get_timer_service().tick()`)
every EVERY_SECONDS, one at a time, until SIGTERM. The benchmarks use it only when
`app_has_timer()` is false; otherwise the dev host runs the app's timer function itself.
"""
from __future__ import annotations

import ast
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def app_has_timer(app_file: Path = ROOT / "function_app.py") -> bool:
    """True when function_app.py registers a timer trigger (a `.timer_trigger(...)` decorator)."""
    tree = ast.parse(app_file.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for deco in node.decorator_list:
                target = deco.func if isinstance(deco, ast.Call) else deco
                if isinstance(target, ast.Attribute) and target.attr in ("timer_trigger", "schedule"):
                    return True
    return False


def main(argv: list[str]) -> int:
    settings_file, every = Path(argv[0]), float(argv[1])
    for key, value in json.loads(settings_file.read_text())["Values"].items():
        os.environ.setdefault(key, value)
    from shared import timer  # after the environment is set: settings are read on first use

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set():
        started = time.monotonic()
        try:
            timer.get_timer_service().tick()
        except Exception as exc:  # noqa: BLE001 - a failed tick is logged by the app; keep ticking
            print(f"tick failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        stop.wait(max(0.0, every - (time.monotonic() - started)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
