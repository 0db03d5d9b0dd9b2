"""Property tests: the evaluator agrees with a plain-Python reference on random formulas."""
from __future__ import annotations

import math
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devstack.batch_emulator.autoscale import EVALUATION_ERROR, AutoScaleError
from devstack.batch_emulator.autoscale.values import format_double

from .autoscale_helpers import NOW, history, result_values, run

# Exact binary fractions, so the text of a literal is the value itself.
literals = st.integers(min_value=0, max_value=800).map(lambda n: n / 8)

_BINARY = ["+", "-", "*", "/", "<", "<=", "==", ">=", ">", "!=", "&&", "||"]


def _tree(leaf):
    return st.recursive(
        leaf.map(lambda v: ("num", v)),
        lambda inner: st.one_of(
            st.tuples(st.just("bin"), st.sampled_from(_BINARY), inner, inner),
            st.tuples(st.just("neg"), inner),
            st.tuples(st.just("not"), inner),
            st.tuples(st.just("cond"), inner, inner, inner),
        ),
        max_leaves=12,
    )


def _text(node) -> str:
    kind = node[0]
    if kind == "num":
        return repr(node[1])
    if kind == "bin":
        return f"({_text(node[2])} {node[1]} {_text(node[3])})"
    if kind == "neg":
        return f"(-{_text(node[1])})"
    if kind == "not":
        return f"(!{_text(node[1])})"
    return f"({_text(node[1])} ? {_text(node[2])} : {_text(node[3])})"


def _reference(node) -> float:
    """C semantics on doubles: comparisons and logic give 1/0, && || and ?: short-circuit."""
    kind = node[0]
    if kind == "num":
        return node[1]
    if kind == "neg":
        return -_reference(node[1])
    if kind == "not":
        return 1.0 if _reference(node[1]) == 0 else 0.0
    if kind == "cond":
        return _reference(node[2]) if _reference(node[1]) != 0 else _reference(node[3])
    op, left = node[1], _reference(node[2])
    if op == "&&":
        return 1.0 if left != 0 and _reference(node[3]) != 0 else 0.0
    if op == "||":
        return 1.0 if left != 0 or _reference(node[3]) != 0 else 0.0
    right = _reference(node[3])
    operations = {
        "+": lambda: left + right,
        "-": lambda: left - right,
        "*": lambda: left * right,
        "/": lambda: left / right,  # ZeroDivisionError mirrors the formula's evaluation error
        "<": lambda: float(left < right),
        "<=": lambda: float(left <= right),
        "==": lambda: float(left == right),
        ">=": lambda: float(left >= right),
        ">": lambda: float(left > right),
        "!=": lambda: float(left != right),
    }
    return operations[op]()


def _assert_matches(formula_expression: str, compute) -> None:
    try:
        expected = compute()
    except ZeroDivisionError:
        with pytest.raises(AutoScaleError) as caught:
            run(f"zz = {formula_expression};")
        assert caught.value.code == EVALUATION_ERROR
        assert "Division by zero" in caught.value.values[0][1]
        return
    assert math.isfinite(expected)
    # ``same`` checks bit-exact equality via a literal; ``zz`` checks the printed form.
    outcome = run(f"zz = {formula_expression}; same = zz == {expected!r};")
    values = result_values(outcome.results)
    assert values["zz"] == format_double(expected)
    assert values["same"] == "1"


@settings(max_examples=150, deadline=None)
@given(_tree(literals))
def test_double_expressions_agree_with_python(tree):
    _assert_matches(_text(tree), lambda: _reference(tree))


@settings(max_examples=100, deadline=None)
@given(literals, st.lists(st.tuples(st.sampled_from(["+", "-", "*", "/"]), literals), max_size=6))
def test_unparenthesized_arithmetic_follows_python_precedence(first, rest):
    expression = repr(first) + "".join(f" {op} {value!r}" for op, value in rest)
    _assert_matches(expression, lambda: eval(expression))  # noqa: S307 - numbers and + - * / only


vector_lists = st.lists(
    st.one_of(literals, st.lists(literals, max_size=5).map(tuple)),
    min_size=1,
    max_size=5,
)


def _argument_text(item) -> str:
    if isinstance(item, tuple):
        return "{" + ", ".join(repr(v) for v in item) + "}"
    return repr(item)


def _flat(items) -> list[float]:
    flat: list[float] = []
    for item in items:
        flat.extend(item if isinstance(item, tuple) else (item,))
    return flat


@settings(max_examples=150, deadline=None)
@given(vector_lists)
def test_aggregates_over_mixed_doubles_and_vectors_agree_with_python(items):
    arguments = ", ".join(_argument_text(item) for item in items)
    flat = _flat(items)
    formula = ";".join(f"{name} = {name}({arguments})" for name in ("sum", "len", "norm"))
    if flat:
        formula += ";" + ";".join(f"{name} = {name}({arguments})" for name in ("avg", "min", "max", "range"))
    values = result_values(run(formula).results)
    expected = {
        "sum": math.fsum(flat),
        "len": float(len(flat)),
        "norm": math.sqrt(math.fsum(v * v for v in flat)),
    }
    if flat:
        expected |= {
            "avg": math.fsum(flat) / len(flat),
            "min": min(flat),
            "max": max(flat),
            "range": max(flat) - min(flat),
        }
    assert {name: values[name] for name in expected} == {name: format_double(v) for name, v in expected.items()}


@settings(max_examples=100, deadline=None)
@given(st.lists(literals, min_size=1, max_size=60), st.integers(min_value=1, max_value=40))
def test_get_sample_windows_agree_with_a_direct_count(values, minutes):
    samples = {"$PendingTasks": history(values)}
    outcome = run(
        f"w = $PendingTasks.GetSample(TimeInterval_Minute * {minutes}, 0);"
        f"p = $PendingTasks.GetSamplePercent(TimeInterval_Minute * {minutes});",
        samples,
    )
    window_start = NOW - timedelta(minutes=minutes)
    inside = [v for t, v in samples["$PendingTasks"] if window_start < t <= NOW]
    result = result_values(outcome.results)
    assert result["w"] == "[" + ",".join(format_double(v) for v in inside) + "]"
    percent = min(100.0, 100.0 * len(inside) / (minutes * 2))
    assert result["p"] == format_double(percent)
    # Without a percentage the service requires 70 % (batch-shipyard#138, see test_autoscale_errors).
    formula = f"w = $PendingTasks.GetSample(TimeInterval_Minute * {minutes});"
    if percent >= 70:
        assert result_values(run(formula, samples).results)["w"] == result["w"]
    else:
        with pytest.raises(AutoScaleError) as caught:
            run(formula, samples)
        assert caught.value.code == "InsufficientSampleData"
