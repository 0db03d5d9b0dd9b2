"""Operators and their type rules - exactly the doc's "Operations" table:

=====================================  ==================  ============
operands                               operators           result
=====================================  ==================  ============
double op double                       + - * /             double
double op timeinterval                 *                   timeinterval
doubleVec op double                    + - * /             doubleVec
doubleVec op doubleVec                 + - * /             doubleVec
timeinterval op double                 * /                 timeinterval
timeinterval op timeinterval           + -                 timeinterval
timeinterval op timestamp              +                   timestamp
timestamp op timeinterval              +                   timestamp
timestamp op timestamp                 -                   timeinterval
op double                              - !                 double
op timeinterval                        -                   timeinterval
double|string|timestamp|timeinterval   < <= == >= > !=     double (1/0)
  (both sides the same type)
double op double                       && ||               double (1/0)
=====================================  ==================  ============

Anything else (e.g. ``timestamp - timeinterval``, which the doc avoids by writing
``time() + (-6 * TimeInterval_Hour)``) is a type error that fails the evaluation.
"""
from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import datetime

from . import nodes
from .errors import FormulaFault, evaluation_fault
from .values import DoubleVec, TimeInterval, type_name

_ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
}
_COMPARISON: dict[str, Callable[[object, object], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    ">=": operator.ge,
    ">": operator.gt,
    "!=": operator.ne,
}


def _type_error(node: nodes.Node, left: object, right: object) -> FormulaFault:
    return evaluation_fault(
        node.position, f"Operator {node.operator} is not defined for {type_name(left)} and {type_name(right)}"
    )


def _divide_check(node: nodes.Binary, divisors: tuple[float, ...]) -> None:
    if node.operator == "/" and any(d == 0 for d in divisors):
        raise evaluation_fault(node.position, "Division by zero")


def _arithmetic(node: nodes.Binary, left: object, right: object) -> object:
    op = node.operator
    apply = _ARITHMETIC[op]
    if isinstance(left, float) and isinstance(right, float):
        _divide_check(node, (right,))
        return apply(left, right)
    if isinstance(left, DoubleVec) and isinstance(right, float):
        _divide_check(node, (right,))
        return DoubleVec(tuple(apply(v, right) for v in left.values))
    if isinstance(left, DoubleVec) and isinstance(right, DoubleVec):
        if len(left.values) != len(right.values):
            raise evaluation_fault(
                node.position, f"Vectors of different lengths ({len(left.values)} and {len(right.values)})"
            )
        _divide_check(node, right.values)
        return DoubleVec(tuple(apply(a, b) for a, b in zip(left.values, right.values)))
    if op == "*" and isinstance(left, float) and isinstance(right, TimeInterval):
        return TimeInterval(left * right.seconds)
    if op in ("*", "/") and isinstance(left, TimeInterval) and isinstance(right, float):
        _divide_check(node, (right,))
        return TimeInterval(apply(left.seconds, right))
    if op in ("+", "-") and isinstance(left, TimeInterval) and isinstance(right, TimeInterval):
        return TimeInterval(apply(left.seconds, right.seconds))
    if op == "+" and isinstance(left, TimeInterval) and isinstance(right, datetime):
        return right + left.as_timedelta()
    if op == "+" and isinstance(left, datetime) and isinstance(right, TimeInterval):
        return left + right.as_timedelta()
    if op == "-" and isinstance(left, datetime) and isinstance(right, datetime):
        return TimeInterval((left - right).total_seconds())
    raise _type_error(node, left, right)


def _comparable(left: object, right: object) -> bool:
    for kind in (float, str, datetime, TimeInterval):
        if isinstance(left, kind) and isinstance(right, kind):
            return True
    return False


def truth(node: nodes.Node, value: object, operand: nodes.Node) -> bool:
    """A double as a condition: non-zero is true (doc, ternary operator)."""
    if not isinstance(value, float):
        raise evaluation_fault(operand.position, f"Operator {node.operator} needs doubles, got {type_name(value)}")
    return value != 0


def apply_binary(node: nodes.Binary, left: object, right: object) -> object:
    if node.operator in _ARITHMETIC:
        return _arithmetic(node, left, right)
    if node.operator in _COMPARISON:
        if not _comparable(left, right):
            raise _type_error(node, left, right)
        return 1.0 if _COMPARISON[node.operator](left, right) else 0.0
    raise AssertionError(f"operator {node.operator} is handled by the evaluator")  # pragma: no cover


def apply_unary(node: nodes.Unary, operand: object) -> object:
    if node.operator == "-" and isinstance(operand, float):
        return -operand
    if node.operator == "-" and isinstance(operand, TimeInterval):
        return TimeInterval(-operand.seconds)
    if node.operator == "!" and isinstance(operand, float):
        return 1.0 if operand == 0 else 0.0
    raise evaluation_fault(node.position, f"Operator {node.operator} is not defined for {type_name(operand)}")
