"""Shared helpers for the autoscale language tests (pure functions, no fixtures)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone

from devstack.batch_emulator.autoscale import AutoScaleInputs, AutoScaleOutcome, compile_formula, evaluate

# A Monday, so weekday-based formulas are predictable.
NOW = datetime(2025, 4, 28, 10, 0, 0, tzinfo=timezone.utc)
PERIOD = timedelta(seconds=30)


def history(values: Sequence[float], *, end: datetime = NOW, period: timedelta = PERIOD):
    """Samples oldest first, the newest one taken exactly at ``end``."""
    count = len(values)
    return [(end - (count - 1 - i) * period, float(v)) for i, v in enumerate(values)]


def inputs(
    samples: Mapping[str, Sequence[tuple[datetime, float]]] | None = None,
    scalars: Mapping[str, float] | None = None,
    *,
    now: datetime = NOW,
    random_value: float = 0.25,
) -> AutoScaleInputs:
    base = {"$TargetDedicatedNodes": 0.0, "$TargetLowPriorityNodes": 0.0}
    base.update(scalars or {})
    return AutoScaleInputs(now=now, samples=samples or {}, scalars=base, random=lambda: random_value)


def run(text: str, samples=None, scalars=None, **kwargs) -> AutoScaleOutcome:
    return evaluate(compile_formula(text), inputs(samples, scalars, **kwargs))


def result_values(results: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in results.split(";"))


def value_of(expression: str, samples=None, scalars=None, **kwargs) -> str:
    """The formatted value of ``expression`` as the service prints it in ``results``."""
    outcome = run(f"zz = {expression};", samples, scalars, **kwargs)
    return result_values(outcome.results)["zz"]
