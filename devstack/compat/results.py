"""Results of a compatibility run: steps parsed from scenario output, one row per client, printed as a table."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

MARKER = "COMPAT-STEP "   # printed by devstack/compat/scenarios/_steps.py


@dataclass(frozen=True)
class Step:
    name: str
    ok: bool
    seconds: float = 0.0
    detail: str = ""


@dataclass
class ClientResult:
    key: str
    client: str
    version: str
    steps: list[Step] = field(default_factory=list)
    setup_error: str | None = None      # the client could not be installed or started
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.setup_error is None and bool(self.steps) and all(s.ok for s in self.steps)

    @property
    def verdict(self) -> str:
        if self.setup_error is not None:
            return "not run"
        passed = sum(s.ok for s in self.steps)
        return "pass" if self.ok else f"FAIL ({len(self.steps) - passed}/{len(self.steps)} steps)"

    def failures(self) -> list[Step]:
        return [s for s in self.steps if not s.ok]

    def to_json(self) -> dict:
        return {**asdict(self), "ok": self.ok, "verdict": self.verdict}


class StepAborted(Exception):
    """A critical step failed; the steps after it depend on it."""


class StepRecorder:
    """Runs in-process steps (raw REST, az CLI) and records each as a Step of `result`; a failure is a result."""

    def __init__(self, result: ClientResult) -> None:
        self.result = result

    def step(self, name: str, fn: Callable[[], Any], *, critical: bool = False) -> Any:
        started = time.monotonic()
        try:
            value = fn()
        except Exception as exc:  # noqa: BLE001 - whatever the client raises is what we report
            self.result.steps.append(Step(name, False, time.monotonic() - started, f"{type(exc).__name__}: {exc}"))
            if critical:
                raise StepAborted(name) from exc
            return None
        detail = value if isinstance(value, str) else ""
        self.result.steps.append(Step(name, True, time.monotonic() - started, detail))
        return value


def parse_steps(output: str) -> list[Step]:
    steps = []
    for line in output.splitlines():
        if line.startswith(MARKER):
            try:
                data = json.loads(line[len(MARKER):])
            except ValueError:
                continue
            steps.append(Step(str(data.get("step")), bool(data.get("ok")), float(data.get("seconds") or 0),
                              str(data.get("detail") or "")))
    return steps


def render(results: Iterable[ClientResult]) -> None:
    """One row per client (steps passed, the operations tried, failures with the client's own error text)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if Console().is_terminal else 180)
    table = Table(title="Batch emulator compatibility", show_lines=True)
    table.add_column("client")
    table.add_column("version")
    table.add_column("operations tried", ratio=3)
    table.add_column("result", no_wrap=True)
    table.add_column("notes", ratio=2)
    for r in results:
        operations = "; ".join(s.name for s in r.steps)
        notes = r.setup_error or "\n".join(f"{s.name}: {s.detail}" for s in r.failures())
        style = "green" if r.ok else ("yellow" if r.setup_error else "red")
        passed = f"{sum(s.ok for s in r.steps)}/{len(r.steps)} steps, {r.seconds:.0f}s"
        table.add_row(r.client, r.version, operations, f"[{style}]{r.verdict}[/{style}]\n{passed}", notes)
    console.print(table)
