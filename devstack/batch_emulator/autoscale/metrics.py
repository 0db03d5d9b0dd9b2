"""Read-only service variables as sample histories (doc "Obtain sample data").

A metric is a history of ``(time, value)`` samples taken every ``sample_period`` (30 s on
the service). Node-count variables additionally have a current value (``scalar``) so they
work both as plain doubles (``$CurrentDedicatedNodes * 1.1``) and with ``GetSample``
(doc "Preempted nodes" sample: ``$PreemptedNodeCount.GetSample(180 * TimeInterval_Second)``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

# Doc tables "Read-only service-defined variables" (2017-2020 revisions) plus
# ``$TaskSlotsPerNode`` (added with task slots; Azure/Batch issue #118 confirms the
# variable) and ``$UsableNodeCount`` (current learn.microsoft.com table as quoted by
# secondary sources; not seen in a primary copy).
READ_ONLY_VARIABLES: frozenset[str] = frozenset(
    {
        "$CPUPercent",
        "$WallClockSeconds",
        "$MemoryBytes",
        "$DiskBytes",
        "$DiskReadBytes",
        "$DiskWriteBytes",
        "$DiskReadOps",
        "$DiskWriteOps",
        "$NetworkInBytes",
        "$NetworkOutBytes",
        "$SampleNodeCount",
        "$ActiveTasks",
        "$RunningTasks",
        "$PendingTasks",
        "$SucceededTasks",
        "$FailedTasks",
        "$TaskSlotsPerNode",
        "$CurrentDedicatedNodes",
        "$CurrentLowPriorityNodes",
        "$PreemptedNodeCount",
        "$UsableNodeCount",
    }
)


@dataclass(frozen=True)
class SampleWindow:
    values: tuple[float, ...]
    percent: float


@dataclass(frozen=True)
class Metric:
    name: str
    samples: tuple[tuple[datetime, float], ...]  # oldest first
    scalar: float | None
    sample_period: timedelta

    def last(self, count: int) -> tuple[float, ...]:
        """``GetSample(count)``: up to ``count`` most recent samples, oldest first."""
        if count <= 0:
            return ()
        return tuple(value for _, value in self.samples[-count:])

    def window(self, a: datetime, b: datetime) -> SampleWindow:
        """Samples taken in ``(earlier, later]`` and the share of the expected ones present.

        Expected = whole sample periods in the window (doc: 10 minutes -> 20 samples; a real
        run reported ``GetSamplePercent(15 min) = 96.6667`` = 29/30).
        """
        start, end = (a, b) if a <= b else (b, a)
        values = tuple(v for t, v in self.samples if start < t <= end)
        expected = math.floor((end - start) / self.sample_period)
        if expected <= 0:
            percent = 100.0
        else:
            percent = min(100.0, 100.0 * len(values) / expected)
        return SampleWindow(values, percent)

    def history_begin(self) -> datetime | None:
        return self.samples[0][0] if self.samples else None
