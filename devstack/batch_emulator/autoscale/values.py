"""Runtime values of the formula language and how the service prints them in ``results``.

Types (doc "Types"): double, doubleVec, string, timestamp, timeinterval. A node
deallocation option (``requeue`` ...) is its own value kind because it can only be
assigned to ``$NodeDeallocationOption``. Read-only service variables are ``Metric``
objects (see metrics.py).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone


@dataclass(frozen=True)
class DoubleVec:
    values: tuple[float, ...]


@dataclass(frozen=True, order=True)
class TimeInterval:
    """A duration in seconds; a float keeps ``TimeInterval_100ns`` exact enough (no timedelta)."""

    seconds: float

    def as_timedelta(self) -> timedelta:
        return timedelta(seconds=self.seconds)


class DeallocationOption(enum.Enum):
    """Values of ``$NodeDeallocationOption`` (doc "Read-write service-defined variables")."""

    REQUEUE = "requeue"
    TERMINATE = "terminate"
    TASKCOMPLETION = "taskcompletion"
    RETAINEDDATA = "retaineddata"


_SECOND = 1.0
# Doc "Types": the timeinterval constants. A year is taken as 365 days (unverified).
TIME_INTERVAL_CONSTANTS: dict[str, TimeInterval] = {
    "TimeInterval_Zero": TimeInterval(0.0),
    "TimeInterval_100ns": TimeInterval(1e-7),
    "TimeInterval_Microsecond": TimeInterval(1e-6),
    "TimeInterval_Millisecond": TimeInterval(1e-3),
    "TimeInterval_Second": TimeInterval(_SECOND),
    "TimeInterval_Minute": TimeInterval(60 * _SECOND),
    "TimeInterval_Hour": TimeInterval(3600 * _SECOND),
    "TimeInterval_Day": TimeInterval(86400 * _SECOND),
    "TimeInterval_Week": TimeInterval(7 * 86400 * _SECOND),
    "TimeInterval_Year": TimeInterval(365 * 86400 * _SECOND),
}

DEALLOCATION_CONSTANTS: dict[str, DeallocationOption] = {o.value: o for o in DeallocationOption}


def format_double(value: float) -> str:
    """Six significant digits, like C's %g: a real run printed ``$samples=96.6667``."""
    if value == 0:
        return "0"  # no "-0"
    return "%.6g" % value


def format_timestamp(value: datetime) -> str:
    """ISO 8601 UTC with milliseconds, as in the doc's ``$curTime=2016-10-14T18:36:43.282Z``."""
    utc = value.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def format_interval(value: TimeInterval) -> str:
    """.NET TimeSpan "c" format ``[-][d.]hh:mm:ss[.fffffff]`` - the service is .NET; unverified."""
    ticks = round(abs(value.seconds) * 10_000_000)
    sign = "-" if value.seconds < 0 and ticks else ""
    days, ticks = divmod(ticks, 86400 * 10_000_000)
    hours, ticks = divmod(ticks, 3600 * 10_000_000)
    minutes, ticks = divmod(ticks, 60 * 10_000_000)
    seconds, fraction = divmod(ticks, 10_000_000)
    text = f"{sign}{str(days) + '.' if days else ''}{hours:02d}:{minutes:02d}:{seconds:02d}"
    return text + (f".{fraction:07d}" if fraction else "")


def format_value(value: object) -> str:
    from .metrics import Metric  # local: metrics imports values

    if isinstance(value, bool):
        raise TypeError("booleans are not formula values")
    if isinstance(value, float):
        return format_double(value)
    if isinstance(value, DoubleVec):
        # A mocked service answer in Azure-Samples shows ``$pendingTasksVector=[1,2,3]``.
        return "[" + ",".join(format_double(v) for v in value.values) + "]"
    if isinstance(value, TimeInterval):
        return format_interval(value)
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, DeallocationOption):
        return value.value
    if isinstance(value, str):
        return value
    if isinstance(value, Metric):
        return format_double(value.scalar) if value.scalar is not None else value.name
    raise TypeError(f"not a formula value: {value!r}")


def type_name(value: object) -> str:
    from .metrics import Metric

    if isinstance(value, float):
        return "double"
    if isinstance(value, DoubleVec):
        return "doubleVec"
    if isinstance(value, TimeInterval):
        return "timeinterval"
    if isinstance(value, datetime):
        return "timestamp"
    if isinstance(value, DeallocationOption):
        return "nodeDeallocationOption"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Metric):
        return "metric"
    return type(value).__name__
