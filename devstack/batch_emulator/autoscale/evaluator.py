"""Evaluate a compiled formula against a snapshot of pool metrics.

Service behaviour this follows (doc "Create a formula to automatically scale compute
nodes in a Batch pool" unless noted):

* Statements run in order; an error aborts the evaluation and the pool size is left
  unchanged. ``stop()`` ends it early but successfully.
* ``$TargetDedicatedNodes``/``$TargetLowPriorityNodes`` start at the pool's current targets
  (a real run of ``max(0, $TargetDedicatedNodes / 2)`` on a 1-node pool reported
  ``$targetVMs=0.5``). Aliases ``$TargetDedicated``/``$TargetLowPriority`` are separate
  slots; when both are set "the value assigned to the fully named variable will take
  precedence". Unassigned targets keep the current target.
* Fractional targets are truncated toward zero: 0.5 -> 0 (MicrosoftDocs/azure-docs#95350)
  and 2.9 -> 2 "per Microsoft support" (Azure/Batch#151). Negative targets are clamped to 0
  (unverified); non-finite ones fail the evaluation (unverified).
* Division by zero fails the evaluation (the doc is silent; unverified).
* ``results`` (REST AutoScaleRun.results: "the final values of all variables used in the
  autoscale formula"): ``$TargetDedicatedNodes``, ``$TargetLowPriorityNodes``,
  ``$NodeDeallocationOption`` then user variables sorted by name, ``;``-separated, no trailing
  ``;``. Real answers: ``$TargetDedicatedNodes=1;$TargetLowPriorityNodes=0;
  $NodeDeallocationOption=taskcompletion;$samples=96.6667;$targetVMs=0.5;$tasks=0;
  cappedPoolSize=3`` (an Azure pool JSON published on GitHub, 2025) and the doc's
  ``$curTime=...;$isWeekday=1;$isWorkingWeekdayHour=0;$workHours=0`` (assigned in another
  order, so the service sorts). Ordinal sorting is assumed.
* Variable names are case-sensitive and ``x`` and ``$x`` are distinct user variables (the
  doc says the ``$`` is optional for user variables; results print names as written).
  Both choices are unverified.
* ``GetSample(interval[, end])`` without a sample percentage requires
  ``DEFAULT_SAMPLE_PERCENT`` (70 %) of the window's samples, like an explicit one: the service
  answered ``Line 9, Col 43: Insufficient data from data set: $PendingTasks wanted 70%,
  received 0%`` for ``avg($PendingTasks.GetSample(sli))`` on a new pool (Azure/batch-shipyard#138,
  formula from convoy/autoscale.py at 75157e9). The position is the ``(`` of the call.
* ``$CurrentDedicated`` is the pre-2017 name of ``$CurrentDedicatedNodes`` (doc tables until
  2017; the Az PowerShell ``Test-AzBatchAutoScale`` example still uses it, with a recorded
  result). No ``$CurrentLowPriority`` is on record (low-priority nodes arrived with the
  ``...Nodes`` names), so none is aliased.
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from . import nodes
from .errors import INSUFFICIENT_SAMPLE_DATA, FormulaFault, evaluation_fault
from .functions import FUNCTIONS, CallContext, StopEvaluation
from .metrics import READ_ONLY_VARIABLES, Metric
from .operators import apply_binary, apply_unary, truth
from .parser import Formula
from .values import (
    DEALLOCATION_CONSTANTS,
    TIME_INTERVAL_CONSTANTS,
    DeallocationOption,
    DoubleVec,
    TimeInterval,
    format_double,
    format_value,
    type_name,
)

TARGET_DEDICATED = "$TargetDedicatedNodes"
TARGET_DEDICATED_ALIAS = "$TargetDedicated"
TARGET_LOW_PRIORITY = "$TargetLowPriorityNodes"
TARGET_LOW_PRIORITY_ALIAS = "$TargetLowPriority"
NODE_DEALLOCATION_OPTION = "$NodeDeallocationOption"
_TARGETS = (TARGET_DEDICATED, TARGET_DEDICATED_ALIAS, TARGET_LOW_PRIORITY, TARGET_LOW_PRIORITY_ALIAS)
_READ_WRITE = frozenset(_TARGETS) | {NODE_DEALLOCATION_OPTION}
_DEFAULT_DEALLOCATION = DeallocationOption.REQUEUE  # doc: "requeue -- The default value."
DEFAULT_SAMPLE_PERCENT = 70.0  # GetSample(interval) without a percentage (batch-shipyard#138)
# Read-only names the service still answers to, and the variable they read.
LEGACY_READ_ONLY_ALIASES: dict[str, str] = {"$CurrentDedicated": "$CurrentDedicatedNodes"}

# Timestamp members (doc "Types"). weekday follows .NET DayOfWeek (Sunday = 0, Monday = 1);
# the doc only fixes "1 for Monday".
_TIMESTAMP_MEMBERS: dict[str, Callable[[datetime], int]] = {
    "year": lambda t: t.year,
    "month": lambda t: t.month,
    "day": lambda t: t.day,
    "weekday": lambda t: t.isoweekday() % 7,
    "hour": lambda t: t.hour,
    "minute": lambda t: t.minute,
    "second": lambda t: t.second,
}
_METRIC_METHODS = frozenset({"GetSample", "GetSamplePercent", "GetSamplePeriod", "Count", "HistoryBeginTime"})


@dataclass(frozen=True)
class AutoScaleInputs:
    """What the service knows about a pool when it evaluates the formula.

    ``samples``: metric histories, oldest first, e.g. ``"$PendingTasks": [(t, 3.0), ...]``;
    ``scalars``: current values - the pool's current targets under ``$TargetDedicatedNodes``
    and ``$TargetLowPriorityNodes`` plus plain-double variables such as
    ``$CurrentDedicatedNodes`` and ``$TaskSlotsPerNode``. A variable may appear in both
    (node counts: usable as a double and with GetSample). Task metrics such as
    ``$PendingTasks`` should appear only in ``samples``: used as a double they fail the
    evaluation, like a metric object on the service (assumed).
    ``random``: source of ``rand()`` values in [0, 1); tests pin it.
    """

    now: datetime
    samples: Mapping[str, Sequence[tuple[datetime, float]]]
    scalars: Mapping[str, float]
    sample_period: timedelta = timedelta(seconds=30)
    random: Callable[[], float] = field(default=random.random, compare=False)

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("AutoScaleInputs.now must be timezone-aware (UTC)")
        if self.sample_period <= timedelta(0):
            raise ValueError("AutoScaleInputs.sample_period must be positive")


@dataclass(frozen=True)
class AutoScaleOutcome:
    target_dedicated: int
    target_low_priority: int
    node_deallocation_option: str | None  # None when the formula does not set it
    results: str


class _Evaluation:
    def __init__(self, inputs: AutoScaleInputs) -> None:
        self._inputs = inputs
        current_dedicated = float(inputs.scalars.get(TARGET_DEDICATED, 0.0))
        current_low_priority = float(inputs.scalars.get(TARGET_LOW_PRIORITY, 0.0))
        self._current = {TARGET_DEDICATED: current_dedicated, TARGET_LOW_PRIORITY: current_low_priority}
        self._targets: dict[str, float] = {
            TARGET_DEDICATED: current_dedicated,
            TARGET_DEDICATED_ALIAS: current_dedicated,
            TARGET_LOW_PRIORITY: current_low_priority,
            TARGET_LOW_PRIORITY_ALIAS: current_low_priority,
        }
        self._assigned_at: dict[str, nodes.Assignment] = {}
        self._deallocation: DeallocationOption | None = None
        self._user: dict[str, object] = {}
        self._metrics: dict[str, Metric] = {}

    # ----- statements -------------------------------------------------------------
    def run(self, statements: Sequence[nodes.Statement]) -> None:
        try:
            for statement in statements:
                if isinstance(statement, nodes.Assignment):
                    self._assign(statement)
                else:
                    self._eval(statement.value)
        except StopEvaluation:
            pass

    def _assign(self, statement: nodes.Assignment) -> None:
        name = statement.name
        if self._is_read_only(name):
            raise evaluation_fault(statement.position, f"Cannot assign to read-only variable {name}")
        value = self._eval(statement.value)
        if name in _TARGETS:
            number = self._double(value, statement.value, f"{name} must be a double")
            self._targets[name] = number
            self._assigned_at[name] = statement
        elif name == NODE_DEALLOCATION_OPTION:
            if not isinstance(value, DeallocationOption):
                raise evaluation_fault(
                    statement.value.position,
                    f"{name} must be one of requeue, terminate, taskcompletion, retaineddata; "
                    f"got {type_name(value)}",
                )
            self._deallocation = value
        else:
            self._user[name] = value

    def _is_read_only(self, name: str) -> bool:
        if name in _READ_WRITE:
            return False
        return (
            name in READ_ONLY_VARIABLES
            or name in LEGACY_READ_ONLY_ALIASES
            or name in self._inputs.samples
            or name in self._inputs.scalars
            or name in TIME_INTERVAL_CONSTANTS
            or name in DEALLOCATION_CONSTANTS
        )

    # ----- expressions ------------------------------------------------------------
    def _eval(self, node: nodes.Node) -> object:
        if isinstance(node, nodes.Number):
            return node.value
        if isinstance(node, nodes.String):
            return node.value
        if isinstance(node, nodes.Variable):
            return self._read(node)
        if isinstance(node, nodes.Binary):
            return self._binary(node)
        if isinstance(node, nodes.Unary):
            return apply_unary(node, self._value(node.operand))
        if isinstance(node, nodes.Conditional):
            condition = self._double(self._value(node.condition), node.condition, "A condition must be a double")
            return self._eval(node.when_true if condition != 0 else node.when_false)
        if isinstance(node, nodes.VectorLiteral):
            return DoubleVec(tuple(self._flatten_vector_items(node)))
        if isinstance(node, nodes.FunctionCall):
            return self._call(node)
        if isinstance(node, nodes.MethodCall):
            return self._method(node)
        if isinstance(node, nodes.Member):
            return self._member(node)
        raise AssertionError(f"unknown node {node!r}")  # pragma: no cover

    def _value(self, node: nodes.Node) -> object:
        """Evaluate ``node`` for use as an operand: a metric becomes its current value."""
        return self._operand(self._eval(node), node)

    @staticmethod
    def _operand(value: object, node: nodes.Node) -> object:
        if isinstance(value, Metric):
            if value.scalar is None:
                raise evaluation_fault(
                    node.position,
                    f"{value.name} is a sample history; use {value.name}.GetSample(...) to read it",
                )
            return value.scalar
        return value

    def _double(self, value: object, node: nodes.Node, detail: str) -> float:
        value = self._operand(value, node)
        if not isinstance(value, float):
            raise evaluation_fault(node.position, f"{detail}, got {type_name(value)}")
        return value

    def _read(self, node: nodes.Variable) -> object:
        name = node.name
        if name in self._targets:
            return self._targets[name]
        if name == NODE_DEALLOCATION_OPTION:
            return self._deallocation or _DEFAULT_DEALLOCATION
        if name in self._user:
            return self._user[name]
        if name in TIME_INTERVAL_CONSTANTS:
            return TIME_INTERVAL_CONSTANTS[name]
        if name in DEALLOCATION_CONSTANTS:
            return DEALLOCATION_CONSTANTS[name]
        if name in READ_ONLY_VARIABLES or name in self._inputs.samples or name in self._inputs.scalars:
            return self._metric(name)
        if name in LEGACY_READ_ONLY_ALIASES:
            return self._metric(LEGACY_READ_ONLY_ALIASES[name], shown_as=name)
        raise evaluation_fault(node.position, f"Undefined variable {name}")

    def _metric(self, name: str, shown_as: str | None = None) -> Metric:
        """The history of ``name``; ``shown_as`` is the (legacy) name the formula wrote."""
        label = shown_as or name
        metric = self._metrics.get(label)
        if metric is None:
            samples = tuple(sorted(self._inputs.samples.get(name, ()), key=lambda sample: sample[0]))
            scalar = self._inputs.scalars.get(name)
            metric = Metric(label, samples, None if scalar is None else float(scalar), self._inputs.sample_period)
            self._metrics[label] = metric
        return metric

    def _binary(self, node: nodes.Binary) -> object:
        if node.operator in ("&&", "||"):
            # Short-circuit like C (unverified): a guarded GetSample is not evaluated.
            left = truth(node, self._value(node.left), node.left)
            if (node.operator == "&&" and not left) or (node.operator == "||" and left):
                return 1.0 if left else 0.0
            return 1.0 if truth(node, self._value(node.right), node.right) else 0.0
        return apply_binary(node, self._value(node.left), self._value(node.right))

    def _flatten_vector_items(self, node: nodes.VectorLiteral) -> list[float]:
        items: list[float] = []
        for item in node.items:
            value = self._value(item)
            if isinstance(value, float):
                items.append(value)
            elif isinstance(value, DoubleVec):
                items.extend(value.values)
            else:
                raise evaluation_fault(item.position, f"A vector holds doubles, got {type_name(value)}")
        return items

    def _call(self, node: nodes.FunctionCall) -> object:
        function = FUNCTIONS.get(node.name)
        if function is None:
            raise evaluation_fault(node.position, f"Unknown function {node.name}")
        args = [self._value(arg) for arg in node.args]
        context = CallContext(node.position, self._inputs.now, self._inputs.random)
        return function(context, args)

    def _member(self, node: nodes.Member) -> object:
        target = self._value(node.target)
        member = _TIMESTAMP_MEMBERS.get(node.name)
        if not isinstance(target, datetime) or member is None:
            raise evaluation_fault(node.position, f"{type_name(target)} has no member {node.name}")
        return float(member(target))

    # ----- metric methods (doc "Obtain sample data") ---------------------------------
    def _method(self, node: nodes.MethodCall) -> object:
        target = self._eval(node.target)
        if not isinstance(target, Metric):
            raise evaluation_fault(node.position, f"{type_name(target)} has no method {node.name}")
        if node.name not in _METRIC_METHODS:
            raise evaluation_fault(node.position, f"{target.name} has no method {node.name}")
        args = [self._value(arg) for arg in node.args]
        if node.name == "GetSample":
            return self._get_sample(node, target, args)
        if node.name == "GetSamplePercent":
            if not 1 <= len(args) <= 2:
                raise evaluation_fault(node.position, "GetSamplePercent takes a start and optional end time")
            start = self._time_point(node, args[0])
            end = self._time_point(node, args[1]) if len(args) == 2 else self._inputs.now
            return target.window(start, end).percent
        if args:
            raise evaluation_fault(node.position, f"{node.name}() takes no arguments")
        if node.name == "GetSamplePeriod":
            return TimeInterval(target.sample_period.total_seconds())
        if node.name == "Count":
            return float(len(target.samples))
        begin = target.history_begin()  # HistoryBeginTime
        if begin is None:
            raise evaluation_fault(node.position, f"{target.name} has no samples")
        return begin

    def _get_sample(self, node: nodes.MethodCall, metric: Metric, args: list[object]) -> DoubleVec:
        """GetSample(count) | GetSample(start[, pct]) | GetSample(start, end[, pct]).

        The doc's signatures: ``doubleVec GetSample(double count)``, ``GetSample((timestamp or
        timeinterval) startTime [, double samplePercent])`` and ``GetSample((timestamp or
        timeinterval) startTime, (timestamp or timeinterval) endTime [, double
        samplePercent])``; a timeinterval means "that long before now". The second argument's
        type tells a percentage from an end time; without one, DEFAULT_SAMPLE_PERCENT applies.
        """
        if len(args) == 1 and isinstance(args[0], float):
            count = args[0]
            if not math.isfinite(count) or count < 0:
                raise evaluation_fault(node.position, f"GetSample count must be non-negative, got {count:g}")
            return DoubleVec(metric.last(int(count)))
        if not 1 <= len(args) <= 3:
            raise evaluation_fault(node.position, "GetSample takes one to three arguments")
        start = self._time_point(node, args[0])
        rest = args[1:]
        end = self._inputs.now
        if rest and not isinstance(rest[0], float):
            end = self._time_point(node, rest[0])
            rest = rest[1:]
        required = DEFAULT_SAMPLE_PERCENT
        if rest:
            if len(rest) > 1 or not isinstance(rest[0], float):
                raise evaluation_fault(node.position, "GetSample samplePercent must be a double")
            required = rest[0]
        window = metric.window(start, end)
        if window.percent < required:
            raise FormulaFault(
                INSUFFICIENT_SAMPLE_DATA,
                node.arguments_position or node.position,
                f"Insufficient data from data set: {metric.name} wanted {format_double(required)}%, "
                f"received {format_double(window.percent)}%",
            )
        return DoubleVec(window.values)

    def _time_point(self, node: nodes.MethodCall, value: object) -> datetime:
        if isinstance(value, TimeInterval):
            return self._inputs.now - value.as_timedelta()
        if isinstance(value, datetime):
            return value
        raise evaluation_fault(node.position, f"{node.name} expects a timestamp or timeinterval, got {type_name(value)}")

    # ----- outcome ----------------------------------------------------------------
    def _effective_target(self, full: str, alias: str) -> float:
        for name in (full, alias):
            if name in self._assigned_at:
                return self._targets[name]
        return self._current[full]

    def _node_count(self, full: str, alias: str) -> int:
        value = self._effective_target(full, alias)
        if not math.isfinite(value):
            statement = self._assigned_at.get(full) or self._assigned_at.get(alias)
            raise evaluation_fault(statement.position if statement else None, f"{full} is not a finite number")
        return max(0, int(value))  # int() truncates toward zero

    def results(self) -> str:
        parts = [
            f"{TARGET_DEDICATED}={format_double(self._effective_target(TARGET_DEDICATED, TARGET_DEDICATED_ALIAS))}",
            f"{TARGET_LOW_PRIORITY}="
            f"{format_double(self._effective_target(TARGET_LOW_PRIORITY, TARGET_LOW_PRIORITY_ALIAS))}",
            f"{NODE_DEALLOCATION_OPTION}={(self._deallocation or _DEFAULT_DEALLOCATION).value}",
        ]
        parts.extend(f"{name}={format_value(self._user[name])}" for name in sorted(self._user))
        return ";".join(parts)

    def outcome(self) -> AutoScaleOutcome:
        return AutoScaleOutcome(
            target_dedicated=self._node_count(TARGET_DEDICATED, TARGET_DEDICATED_ALIAS),
            target_low_priority=self._node_count(TARGET_LOW_PRIORITY, TARGET_LOW_PRIORITY_ALIAS),
            node_deallocation_option=self._deallocation.value if self._deallocation else None,
            results=self.results(),
        )


def evaluate(formula: Formula, inputs: AutoScaleInputs) -> AutoScaleOutcome:
    """Run ``formula``; raise AutoScaleError (with ``.results``) if the evaluation fails."""
    evaluation = _Evaluation(inputs)
    try:
        evaluation.run(formula.statements)
        return evaluation.outcome()
    except FormulaFault as fault:
        raise fault.to_error(results=evaluation.results()) from None
