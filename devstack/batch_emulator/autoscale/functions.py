"""Built-in functions (doc "Functions"): avg len lg ln log max min norm percentile rand range
std stop sum time val.

``doubleVecList`` arguments are any comma-separated mix of doubles and doubleVecs, flattened
into one vector before the function runs (doc: ``avg(v, 7)`` == ``avg(1,2,3,7)`` for
``v = [1,2,3]``). Where the doc is silent (empty vectors, log of non-positive numbers,
percentile method) the choice is marked "unverified"; those cases fail the evaluation
rather than produce NaN/inf targets.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .errors import FormulaFault, Position, evaluation_fault
from .values import DoubleVec, type_name


class StopEvaluation(Exception):
    """``stop()``: end the evaluation successfully with the values set so far."""


@dataclass(frozen=True)
class CallContext:
    position: Position
    now: datetime
    random: Callable[[], float]


Function = Callable[[CallContext, list[object]], object]


def _fault(context: CallContext, detail: str) -> FormulaFault:
    return evaluation_fault(context.position, detail)


def _flatten(context: CallContext, name: str, args: list[object]) -> list[float]:
    flat: list[float] = []
    for arg in args:
        if isinstance(arg, float):
            flat.append(arg)
        elif isinstance(arg, DoubleVec):
            flat.extend(arg.values)
        else:
            raise _fault(context, f"{name}() expects doubles or doubleVecs, got {type_name(arg)}")
    return flat


def _non_empty(context: CallContext, name: str, args: list[object]) -> list[float]:
    values = _flatten(context, name, args)
    if not values:
        raise _fault(context, f"{name}() of an empty vector")  # unverified
    return values


def _arity(context: CallContext, name: str, args: list[object], count: int) -> None:
    if len(args) != count:
        raise _fault(context, f"{name}() takes {count} argument(s), got {len(args)}")


def _avg(context, args):
    values = _non_empty(context, "avg", args)
    return math.fsum(values) / len(values)


def _len(context, args):
    return float(len(_flatten(context, "len", args)))


def _max(context, args):
    return max(_non_empty(context, "max", args))


def _min(context, args):
    return min(_non_empty(context, "min", args))


def _sum(context, args):
    return math.fsum(_flatten(context, "sum", args))


def _norm(context, args):
    return math.sqrt(math.fsum(v * v for v in _flatten(context, "norm", args)))


def _range(context, args):
    values = _non_empty(context, "range", args)
    return max(values) - min(values)


def _std(context, args):
    """Sample standard deviation (doc: "sample standard deviation"), n - 1 denominator."""
    values = _flatten(context, "std", args)
    if len(values) < 2:
        raise _fault(context, "std() needs at least two values")  # unverified
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _logarithm(name: str, log: Callable[[float], float]) -> Function:
    """lg/ln/log: double -> double; a doubleVec or a list -> component-wise doubleVec (doc)."""

    def apply(context: CallContext, args: list[object]) -> object:
        if not args:
            raise _fault(context, f"{name}() needs an argument")
        values = _flatten(context, name, args)
        if any(v <= 0 for v in values):
            raise _fault(context, f"{name}() of a non-positive number")  # unverified
        if len(args) == 1 and isinstance(args[0], float):
            return log(values[0])
        return DoubleVec(tuple(log(v) for v in values))

    return apply


def _percentile(context, args):
    """Nearest-rank percentile: the doc says it "returns the percentile element of the vector"
    (an element, so no interpolation); the exact rank rule is unverified."""
    _arity(context, "percentile", args, 2)
    vector, p = args
    if not isinstance(vector, DoubleVec) or not isinstance(p, float):
        raise _fault(context, "percentile() expects (doubleVec, double)")
    if not vector.values:
        raise _fault(context, "percentile() of an empty vector")
    if not 0 <= p <= 100:
        raise _fault(context, f"percentile() needs 0 <= p <= 100, got {p:g}")
    ordered = sorted(vector.values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _rand(context, args):
    _arity(context, "rand", args, 0)
    return float(context.random())


def _stop(context, args):
    _arity(context, "stop", args, 0)
    raise StopEvaluation()


def _val(context, args):
    """Element ``i`` (zero-based) of ``v``; a fractional index is truncated (unverified).

    An empty ``v`` reads 0: on a new pool the service went past ``lastsample =
    val($PendingTasks.GetSample(1), 0)`` (line 8) and failed only on line 9 (Azure/batch-shipyard#138,
    "received 0%", so no sample was visible). Which of GetSample(1) and val() absorbs the empty
    history is not on record; GetSample(1) keeps returning what exists (the doc: "the last
    available sample"). An index past the end of a non-empty vector still fails (unverified).
    """
    _arity(context, "val", args, 2)
    vector, index = args
    if not isinstance(vector, DoubleVec) or not isinstance(index, float):
        raise _fault(context, "val() expects (doubleVec, double)")
    if not vector.values and math.isfinite(index) and int(index) >= 0:
        return 0.0
    if not math.isfinite(index) or not 0 <= int(index) < len(vector.values):
        raise _fault(context, f"val() index {index:g} is outside a vector of {len(vector.values)}")
    return vector.values[int(index)]


# W3C-DTF (https://www.w3.org/TR/NOTE-datetime); up to 7 fraction digits like .NET's
# DateTime (nextflow-io/nextflow#3866: a longer fraction broke time("...") on the service).
_W3C_DTF = re.compile(
    r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d{1,7}))?)?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2}))?)?)?"
)
_RFC_1123 = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (?P<day>\d{2}) (?P<month>[A-Z][a-z]{2}) (?P<year>\d{4}) "
    r"(?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2}) GMT"
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def parse_datetime(text: str) -> datetime | None:
    """W3C-DTF or RFC 1123 (doc ``time(string dateTime="")``), as UTC; None if neither."""
    try:
        match = _RFC_1123.fullmatch(text)
        if match and match["month"] in _MONTHS:
            return datetime(
                int(match["year"]), _MONTHS.index(match["month"]) + 1, int(match["day"]),
                int(match["hour"]), int(match["minute"]), int(match["second"]), tzinfo=timezone.utc,
            )
        match = _W3C_DTF.fullmatch(text)
        if not match:
            return None
        fraction = match["fraction"] or ""
        moment = datetime(
            int(match["year"]), int(match["month"] or 1), int(match["day"] or 1),
            int(match["hour"] or 0), int(match["minute"] or 0), int(match["second"] or 0),
            int((fraction + "000000")[:6]), tzinfo=timezone.utc,
        )
    except ValueError:  # e.g. month 13
        return None
    zone = match["zone"]
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        moment -= sign * offset  # local time minus its offset is UTC
    return moment


def _time(context, args):
    if not args:
        return context.now
    _arity(context, "time", args, 1)
    (text,) = args
    if not isinstance(text, str):
        raise _fault(context, f"time() expects a string, got {type_name(text)}")
    if text == "":
        return context.now
    moment = parse_datetime(text)
    if moment is None:
        raise _fault(context, f"time() cannot parse '{text}' (W3C-DTF or RFC 1123 expected)")
    return moment


FUNCTIONS: dict[str, Function] = {
    "avg": _avg,
    "len": _len,
    "lg": _logarithm("lg", math.log2),
    "ln": _logarithm("ln", math.log),
    "log": _logarithm("log", math.log10),
    "max": _max,
    "min": _min,
    "norm": _norm,
    "percentile": _percentile,
    "rand": _rand,
    "range": _range,
    "std": _std,
    "stop": _stop,
    "sum": _sum,
    "time": _time,
    "val": _val,
}
