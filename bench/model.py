"""What a benchmark item hands to the report: findings (one summary line each), a detail table,
notes, and the data for one chart. Plain data, JSON-serialisable."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Finding:
    """One headline figure: ours against the baseline, and whether the target is met."""

    measure: str
    ours: str                  # formatted value, e.g. "0.41 s"
    baseline: str              # formatted value of the baseline, or "" when there is none
    ratio: float | None        # ours / baseline (lower is better unless the measure says otherwise)
    target: str                # e.g. "<= 1.15x raw"; "" when the item sets none for this line
    met: bool | None           # None: no target on this line


@dataclass
class Chart:
    """Grouped bars: one group per label in `groups`, one bar per series."""

    title: str
    ylabel: str
    groups: list[str]
    series: dict[str, list[float]]
    log: bool = False


@dataclass
class ItemResult:
    key: str                   # "1".."6"
    title: str
    baseline: str              # what it is compared with
    target: str                # the target, stated plainly
    findings: list[Finding] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    chart: Chart | None = None
    seconds: float = 0.0
    error: str | None = None   # the item failed to run; the report says so instead of a figure
    raw: dict[str, Any] = field(default_factory=dict)  # machine-readable figures (results JSON)

    @property
    def targets_met(self) -> bool | None:
        verdicts = [f.met for f in self.findings if f.met is not None]
        if self.error is not None:
            return False
        return all(verdicts) if verdicts else None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
