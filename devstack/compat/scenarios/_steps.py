"""Step recording shared by the scenario scripts. Standard library only: the scripts run inside throwaway venvs
that hold nothing but the client under test.

Each step prints one line `COMPAT-STEP {"step": ..., "ok": ..., "seconds": ..., "detail": ...}` that
devstack.compat.results parses. A failed critical step ends the scenario (later steps depend on it); other
failures are recorded and the scenario goes on, so one run shows everything that breaks.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any, Callable, Optional, TypeVar

MARKER = "COMPAT-STEP "
T = TypeVar("T")


class ScenarioAborted(Exception):
    pass


def describe(exc: BaseException) -> str:
    """One line for a failure: Batch/Storage error code and message when the client exposes them."""
    failed = getattr(exc, "failure_tasks", None)  # azure-batch's CreateTasksErrorException (add_collection)
    if failed:
        return f"{type(exc).__name__}: {len(failed)} task(s) refused; first: {task_error(failed[0])}"
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None) or getattr(exc, "error_code", None)
    message = getattr(getattr(error, "message", None), "value", None) or getattr(error, "message", None)
    if isinstance(message, str) and code:
        return f"{type(exc).__name__} {code}: {message.splitlines()[0]}"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def task_error(result: Any) -> str:
    """`task_id code: message` of a TaskAddResult that failed."""
    error = getattr(result, "error", None)
    message = getattr(getattr(error, "message", None), "value", "") or ""
    details = "; ".join(f"{v.key}={v.value}" for v in (getattr(error, "values", None) or []))
    return f"{result.task_id} {getattr(error, 'code', '?')}: {message.splitlines()[0] if message else ''} {details}"


class Steps:
    def __init__(self) -> None:
        self.failures = 0

    def emit(self, name: str, ok: bool, seconds: float, detail: str = "") -> None:
        print(MARKER + json.dumps({"step": name, "ok": ok, "seconds": round(seconds, 3), "detail": detail[:400]}),
              flush=True)

    def run(self, name: str, fn: Callable[[], T], *, critical: bool = False) -> Optional[T]:
        started = time.monotonic()
        try:
            value = fn()
        except Exception as exc:  # a client failure is a result, not a crash of the scenario
            self.failures += 1
            self.emit(name, False, time.monotonic() - started, describe(exc))
            traceback.print_exc(file=sys.stderr)
            if critical:
                raise ScenarioAborted(name) from exc
            return None
        self.emit(name, True, time.monotonic() - started, _short(value))
        return value

    def exit_code(self) -> int:
        return 1 if self.failures else 0


def _short(value: Any) -> str:
    return value if isinstance(value, str) else ""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def wait_until(probe: Callable[[], T], ok: Callable[[T], bool], timeout: float, what: str,
               interval: float = 0.25) -> T:
    deadline = time.monotonic() + timeout
    value = probe()
    while not ok(value):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout:.0f}s")
        time.sleep(interval)
        value = probe()
    return value


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"missing environment variable {name}")
    return value
