"""Glue between pools and the autoscale formula language: compile with the service's 400s, build the inputs a
formula sees from the pool's metric samples, and shape results as the pool's `autoScaleRun`."""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .. import errors
from ..autoscale import AutoScaleError, AutoScaleInputs, AutoScaleOutcome, Formula, compile_formula, evaluate
from ..config import EmulatorConfig
from ..timeutil import iso
from .records import PoolRecord

# Metric samples kept per pool: 24 h at the service's 30 s period is enough for any practical look-back.
MAX_SAMPLES = 2880
TASK_METRICS = ("$ActiveTasks", "$RunningTasks", "$PendingTasks", "$SucceededTasks", "$FailedTasks")
NODE_METRICS = ("$CurrentDedicatedNodes", "$CurrentLowPriorityNodes", "$PreemptedNodeCount", "$SampleNodeCount",
                "$UsableNodeCount")
DEFAULT_INTERVAL = timedelta(minutes=15)
MAX_INTERVAL = timedelta(hours=168)


def compile_or_400(text: str) -> Formula:
    """Compile a formula; syntax/length problems are the request's fault (400 with the formula error code)."""
    try:
        return compile_formula(text)
    except AutoScaleError as exc:
        raise errors.BatchError(400, exc.code, exc.message, [(k, v) for k, v in exc.values]) from None


@dataclass(frozen=True)
class RunResult:
    run: dict[str, Any]                  # the autoScaleRun wire object
    outcome: AutoScaleOutcome | None     # None when the evaluation failed


def record_sample(pool: PoolRecord, now: datetime, values: dict[str, float]) -> None:
    for name, value in values.items():
        series = pool.samples.setdefault(name, [])
        series.append((now, float(value)))
        if len(series) > MAX_SAMPLES:
            del series[: len(series) - MAX_SAMPLES]


def sample_lag(config: EmulatorConfig) -> timedelta:
    """How long after it is taken a sample becomes visible to formulas (docs: "approximately one minute")."""
    return config.sample_lag if config.sample_lag is not None else 2 * config.sample_period


def replace_history(pool: PoolRecord, now: datetime, series: dict[str, list[float]], period: timedelta,
                    newest_age: timedelta) -> None:
    """Test hook: make each named metric's history exactly ``values`` (oldest first), one sample per ``period``,
    the newest taken ``newest_age`` ago (formulas see it once the sample lag has passed, like any sample)."""
    newest = now - newest_age
    for name, values in series.items():
        count = len(values)
        pool.samples[name] = [(newest - (count - 1 - i) * period, float(v)) for i, v in enumerate(values)]


def inputs_for(pool: PoolRecord, now: datetime, scalars: dict[str, float], config: EmulatorConfig) -> AutoScaleInputs:
    """What a formula sees at ``now``: the samples taken up to ``now - sample_lag`` (their own timestamps)."""
    visible_until = now - sample_lag(config)
    samples = {name: series[:bisect_right(series, visible_until, key=lambda sample: sample[0])]
               for name, series in pool.samples.items()}
    return AutoScaleInputs(now=now, samples=samples, scalars=scalars, sample_period=config.sample_period)


def run(formula: Formula, inputs: AutoScaleInputs) -> RunResult:
    timestamp = iso(inputs.now)
    try:
        outcome = evaluate(formula, inputs)
    except AutoScaleError as exc:
        run_doc: dict[str, Any] = {
            "timestamp": timestamp,
            "error": {"code": exc.code, "message": exc.message,
                      "values": [{"name": k, "value": v} for k, v in exc.values]},
        }
        if exc.results:
            run_doc["results"] = exc.results
        return RunResult(run_doc, None)
    return RunResult({"timestamp": timestamp, "results": outcome.results}, outcome)
