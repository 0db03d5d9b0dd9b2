"""Replay an autoscale formula over a pending-tasks history, seen through the emulator's sample lag.

Samples are taken every ``period`` and become visible ``lag`` later, exactly as the Batch emulator serves
them to formulas (``backend.autoscaling.record_sample`` / ``inputs_for``); the formula runs through the
emulator's own evaluator at every sample time. The pending history is given, not simulated from the
targets (open loop), so two formulas can be compared on the same input.

    .venv/bin/python -m devstack.formula_replay      # the app's formula before and after issue 16, one burst
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from devstack.batch_emulator.autoscale import AutoScaleError, compile_formula, evaluate
from devstack.batch_emulator.backend.autoscaling import inputs_for, record_sample
from devstack.batch_emulator.backend.records import PoolRecord
from devstack.batch_emulator.config import EmulatorConfig

START = datetime(2026, 1, 5, 12, 0, 0, tzinfo=timezone.utc)

# shared/pool_spec.autoscale_formula before issue 16 (commit 3e9d5f5), for slots and max nodes given.
FORMULA_BEFORE_ISSUE_16 = """maxNodes = {max_nodes};
slotsPerNode = {slots};
samplePercent = $PendingTasks.GetSamplePercent(TimeInterval_Minute * 3);
pending = samplePercent < 70 ? max(0, $PendingTasks.GetSample(1)) : max($PendingTasks.GetSample(TimeInterval_Minute * 3));
nodes = min(maxNodes, (pending + slotsPerNode - 1) / slotsPerNode);
$TargetDedicatedNodes = max(0, nodes);
$TargetLowPriorityNodes = 0;
$NodeDeallocationOption = taskcompletion;"""

# A wavy burst, one value per 30 s sample: a producer uploads in waves every 2 minutes for 7 minutes
# (12, then 6 more per wave), conversions drain ~2 per 30 s, then the queue empties.
BURST: tuple[float, ...] = (0, 0, 0, 0, 0, 0, 12, 10, 8, 6, 12, 10, 8, 6, 12, 10, 8, 6, 12, 10, 8, 6, 4, 2, 0,
                            0, 0, 0, 0, 0, 0, 0)


@dataclass(frozen=True)
class Step:
    minute: float
    pending: float           # the true value at this moment (the sample taken now, not yet visible)
    target: int | None       # None: the evaluation failed
    results: str             # autoScaleRun.results (or the error text)

    def value(self, name: str) -> str:
        return dict(p.split("=", 1) for p in self.results.split(";") if "=" in p).get(name, "")


def replay(formula_text: str, pending: Sequence[float], *, period: timedelta = timedelta(seconds=30),
           lag: timedelta | None = None) -> list[Step]:
    """Evaluate ``formula_text`` at every sample time of ``pending`` (lag None: the emulator's default)."""
    config = EmulatorConfig(data_dir=None, sample_period=period, sample_lag=lag)
    formula = compile_formula(formula_text)
    pool = PoolRecord(doc={"id": "replay"})
    steps: list[Step] = []
    current = 0.0
    for index, value in enumerate(pending):
        now = START + index * period
        record_sample(pool, now, {"$PendingTasks": value, "$ActiveTasks": value, "$RunningTasks": 0.0})
        scalars = {"$TargetDedicatedNodes": current, "$TargetLowPriorityNodes": 0.0, "$CurrentDedicatedNodes": current}
        try:
            outcome = evaluate(formula, inputs_for(pool, now, scalars, config))
        except AutoScaleError as exc:
            steps.append(Step(index * period / timedelta(minutes=1), value, None, str(exc)))
            continue
        current = float(outcome.target_dedicated)
        steps.append(Step(index * period / timedelta(minutes=1), value, outcome.target_dedicated, outcome.results))
    return steps


def table(before: list[Step], after: list[Step]) -> str:
    """A Markdown table: minute, true pending, each formula's window share and target."""
    lines = ["| min | pending now | before: 3-min % | before: target | after: window % | after: target |",
             "|---|---|---|---|---|---|"]
    for b, a in zip(before, after):
        lines.append(f"| {b.minute:g} | {b.pending:g} | {b.value('samplePercent') or '-'} | "
                     f"{'error' if b.target is None else b.target} | {a.value('samplePercent') or '-'} | "
                     f"{'error' if a.target is None else a.target} |")
    return "\n".join(lines)


def main() -> None:
    from shared.pool_spec import autoscale_formula
    from shared.settings import NodePriority

    slots, max_nodes = 2, 8
    before = replay(FORMULA_BEFORE_ISSUE_16.format(slots=slots, max_nodes=max_nodes), BURST)
    after = replay(autoscale_formula(slots, max_nodes, NodePriority.DEDICATED), BURST)
    print(f"slots per node {slots}, max nodes {max_nodes}, samples every 30 s, visible 60 s later\n")
    print(table(before, after))


if __name__ == "__main__":
    main()
