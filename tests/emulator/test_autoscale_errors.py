"""Compile and evaluation errors carry the service's codes, messages and positioned values."""
from __future__ import annotations

from datetime import timedelta

import pytest

from devstack.batch_emulator.autoscale import (
    EVALUATION_ERROR,
    FORMULA_TOO_LONG,
    INSUFFICIENT_SAMPLE_DATA,
    MAX_FORMULA_CHARS,
    SYNTAX_ERROR,
    AutoScaleError,
    compile_formula,
)

from .autoscale_helpers import NOW, history, run


def _compile_error(text: str) -> AutoScaleError:
    with pytest.raises(AutoScaleError) as caught:
        compile_formula(text)
    assert caught.value.results is None
    return caught.value


def _evaluation_error(text: str, samples=None, scalars=None) -> AutoScaleError:
    with pytest.raises(AutoScaleError) as caught:
        run(text, samples, scalars)
    return caught.value


# ----- syntax ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a = 1 b = 2", "Line 1, Col 7: Unexpected 'b'"),
        ("a = 1;\nb = 2\nc = 3;", "Line 3, Col 1: Unexpected 'c'"),
        ("a = (1 + 2;", "Line 1, Col 11: Unexpected ';'"),
        ("a = 1 # 2;", "Line 1, Col 7: Unexpected character '#'"),
        ("x = 1;\n  y = 2 @ 3;", "Line 2, Col 9: Unexpected character '@'"),
        ("a = ", "Line 1, Col 5: Unexpected end of formula"),
        ("a = 1 +\n", "Line 2, Col 1: Unexpected end of formula"),
        ("1 = 2;", "Line 1, Col 3: Unexpected '='"),
        ("$TargetDedicatedNodes == ;", "Line 1, Col 26: Unexpected ';'"),
        ("a = 1 ? 2;", "Line 1, Col 10: Unexpected ';'"),
        ("a = 'x';", "Line 1, Col 5: Unexpected character '''"),
        ("/* no block comments */ a = 1;", "Line 1, Col 1: Unexpected '/'"),
    ],
)
def test_syntax_errors_report_line_and_column(text, message):
    error = _compile_error(text)
    assert error.code == SYNTAX_ERROR == "AutoScalingFormulaSyntaxError"
    assert error.message == "The specified auto-scaling formula has a syntax error."
    assert error.values == [("Message", message)]


def test_formula_length_limit_is_8192_characters():
    assert MAX_FORMULA_CHARS == 8192
    statement = "a = 1;"
    fits = "//" + "x" * (MAX_FORMULA_CHARS - len(statement) - 3) + "\n" + statement
    assert len(fits) == MAX_FORMULA_CHARS
    compile_formula(fits)
    error = _compile_error(fits + " ")
    assert error.code == FORMULA_TOO_LONG == "AutoScaleFormulaTooLong"
    assert "8193" in error.values[0][1]


def test_at_most_100_statements():
    compile_formula(";".join(f"v{i} = {i}" for i in range(100)) + ";")
    error = _compile_error(";".join(f"v{i} = {i}" for i in range(101)))
    assert error.code == SYNTAX_ERROR
    assert "101 statements" in error.values[0][1]


def test_empty_statements_do_not_count():
    compile_formula(";;;".join(f"v{i} = {i}" for i in range(100)))


# ----- evaluation -----------------------------------------------------------------------------
def test_undefined_variable_is_an_evaluation_error_with_results_like_the_service():
    """azure-sdk-for-js test: ``$something_useless`` -> AutoScalingFormulaEvaluationError and
    results ``$TargetDedicatedNodes=2;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue``."""
    error = _evaluation_error("$something_useless", scalars={"$TargetDedicatedNodes": 2})
    assert error.code == EVALUATION_ERROR == "AutoScalingFormulaEvaluationError"
    assert error.values == [("Message", "Line 1, Col 1: Undefined variable $something_useless")]
    assert error.results == "$TargetDedicatedNodes=2;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue"


def test_evaluation_error_results_hold_the_values_set_before_the_failure():
    error = _evaluation_error("$TargetDedicatedNodes = 3; a = 1;\nb = nope + 1; c = 2;")
    assert error.values == [("Message", "Line 2, Col 5: Undefined variable nope")]
    assert error.results == "$TargetDedicatedNodes=3;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue;a=1"


def test_insufficient_samples_fail_with_the_documented_error():
    # Doc: 18 of 20 samples in 10 minutes; GetSample(TimeInterval_Minute * 10, 95) fails.
    samples = {"$CPUPercent": history([40.0] * 18, end=NOW - timedelta(minutes=1))}
    error = _evaluation_error("a = 1;\n$x = $CPUPercent.GetSample(TimeInterval_Minute * 10, 95);", samples)
    assert error.code == INSUFFICIENT_SAMPLE_DATA == "InsufficientSampleData"
    assert error.message == "Autoscale evaluation failed due to insufficient sample data"
    assert error.values == [
        # Col 27 is the "(" after GetSample, where the service points (see the batch-shipyard test below).
        ("Message", "Line 2, Col 27: Insufficient data from data set: $CPUPercent wanted 95%, received 90%")
    ]
    assert error.results.endswith(";a=1")


def test_insufficient_samples_with_no_history_at_all():
    error = _evaluation_error("r = $RunningTasks.GetSample(60 * TimeInterval_Second, 120 * TimeInterval_Second, 75);")
    assert error.values == [
        ("Message", "Line 1, Col 28: Insufficient data from data set: $RunningTasks wanted 75%, received 0%")
    ]


# Azure/batch-shipyard#138 (2017): on a new pool the service answered, for the pending_tasks scenario
# formula that convoy/autoscale.py built at commit 75157e9 (bias_last_sample on, the lines joined by ";\n"):
#   "Line 9, Col 43: Insufficient data from data set: $PendingTasks wanted 70%, received 0%"
# Line 9 is `samplevecavg = avg($PendingTasks.GetSample(sli))`: a GetSample(interval) WITHOUT a percentage,
# so the service applies 70 %; column 43 is the "(" after GetSample; and line 8's
# `val($PendingTasks.GetSample(1), 0)` did not fail on the empty history.
SHIPYARD_PENDING_TASKS_FORMULA = ";\n".join([
    "maxTasksPerNode = 1",
    "minTargetDedicated = 0",
    "minTargetLowPriority = 0",
    "maxTargetDedicated = 4",
    "maxTargetLowPriority = 0",
    "sli = TimeInterval_Second * 900.0",
    "samplepercent = $PendingTasks.GetSamplePercent(sli)",
    "lastsample = val($PendingTasks.GetSample(1), 0)",
    "samplevecavg = avg($PendingTasks.GetSample(sli))",
    "PendingTaskAvg = samplepercent < 70 ? max(0, lastsample) : "
    "(lastsample < samplevecavg ? avg(lastsample, samplevecavg) : max(lastsample, samplevecavg))",
    "reqVMs = PendingTaskAvg / maxTasksPerNode",
    "$TargetDedicatedNodes = min(maxTargetDedicated, max(minTargetDedicated, reqVMs))",
    "$NodeDeallocationOption = taskcompletion",
]) + ";"


def test_get_sample_interval_without_a_percentage_requires_70_percent_as_the_service_answered():
    error = _evaluation_error(SHIPYARD_PENDING_TASKS_FORMULA)
    assert error.code == INSUFFICIENT_SAMPLE_DATA
    assert error.values == [
        ("Message", "Line 9, Col 43: Insufficient data from data set: $PendingTasks wanted 70%, received 0%")
    ]
    assert "lastsample=0" in error.results  # line 8 went through on the empty history


def test_get_sample_interval_without_a_percentage_passes_at_70_percent():
    samples = {"$PendingTasks": history([3.0] * 21)}  # 21 of 30 expected in 15 minutes: 70 %
    outcome = run(SHIPYARD_PENDING_TASKS_FORMULA, samples)
    assert outcome.target_dedicated == 3
    samples = {"$PendingTasks": history([3.0] * 20)}  # 66.7 %: the service's "wanted 70%"
    assert _evaluation_error(SHIPYARD_PENDING_TASKS_FORMULA, samples).code == INSUFFICIENT_SAMPLE_DATA


@pytest.mark.parametrize(
    "text",
    [
        "$PendingTasks = 3;",
        "$CPUPercent = 1;",
        "$CurrentDedicatedNodes = 1;",
        "$TaskSlotsPerNode = 2;",
        "TimeInterval_Second = 1;",
        "requeue = 1;",
    ],
)
def test_assigning_a_read_only_name_fails_the_evaluation(text):
    error = _evaluation_error("ok = 1;\n" + text)
    name = text.split(" ")[0]
    assert error.code == EVALUATION_ERROR
    assert error.values == [("Message", f"Line 2, Col 1: Cannot assign to read-only variable {name}")]


def test_variables_supplied_by_the_emulator_are_read_only_too():
    error = _evaluation_error("$CustomMetric = 1;", scalars={"$CustomMetric": 3})
    assert "read-only" in error.values[0][1]


@pytest.mark.parametrize(
    ("expression", "detail"),
    [
        ("1 / 0", "Division by zero"),
        ("{1, 2} / {1, 0}", "Division by zero"),
        ("TimeInterval_Second / 0", "Division by zero"),
        ('"a" + "b"', "Operator + is not defined for string and string"),
        ("time() - TimeInterval_Hour", "Operator - is not defined for timestamp and timeinterval"),
        ("1 + TimeInterval_Hour", "Operator + is not defined for double and timeinterval"),
        ("TimeInterval_Hour * TimeInterval_Hour", "Operator * is not defined for timeinterval and timeinterval"),
        ("1 + {1}", "Operator + is not defined for double and doubleVec"),
        ("{1} > 0", "Operator > is not defined for doubleVec and double"),
        ("{1, 2} + {1, 2, 3}", "Vectors of different lengths (2 and 3)"),
        ("1 < TimeInterval_Hour", "Operator < is not defined for double and timeinterval"),
        ("-{1}", "Operator - is not defined for doubleVec"),
        ("!TimeInterval_Hour", "Operator ! is not defined for timeinterval"),
        ("{1} && 1", "Operator && needs doubles, got doubleVec"),
        ("TimeInterval_Hour ? 1 : 2", "A condition must be a double, got timeinterval"),
        ("{TimeInterval_Hour}", "A vector holds doubles, got timeinterval"),
        ("nosuch(1)", "Unknown function nosuch"),
        ("avg()", "avg() of an empty vector"),
        ("max({})", "max() of an empty vector"),
        ("avg(TimeInterval_Hour)", "avg() expects doubles or doubleVecs, got timeinterval"),
        ("std(1)", "std() needs at least two values"),
        ("ln(0)", "ln() of a non-positive number"),
        ("log({1, -1})", "log() of a non-positive number"),
        ("val({1, 2}, 2)", "val() index 2 is outside a vector of 2"),
        ("val(1, 0)", "val() expects (doubleVec, double)"),
        ("percentile({1}, 101)", "percentile() needs 0 <= p <= 100, got 101"),
        ("rand(1)", "rand() takes 0 argument(s), got 1"),
        ('time("2025-13-01")', "time() cannot parse '2025-13-01' (W3C-DTF or RFC 1123 expected)"),
        ('time("2025-04-28T10:00:00.12345678Z")', "cannot parse"),
        ("time(1)", "time() expects a string, got double"),
        ("time().hours", "timestamp has no member hours"),
        ("(1).hour", "double has no member hour"),
        ("$PendingTasks.GetSamples(1)", "$PendingTasks has no method GetSamples"),
        ("(1).GetSample(1)", "double has no method GetSample"),
        ("$PendingTasks.GetSample(-1)", "GetSample count must be non-negative, got -1"),
        ('$PendingTasks.GetSample("x")', "GetSample expects a timestamp or timeinterval, got string"),
        ("$PendingTasks.GetSample(TimeInterval_Hour, 1, 2)", "GetSample samplePercent must be a double"),
        ("$PendingTasks.Count(1)", "Count() takes no arguments"),
        ("$PendingTasks.HistoryBeginTime()", "$PendingTasks has no samples"),
        ("$PendingTasks.GetSamplePercent()", "GetSamplePercent takes a start and optional end time"),
        ("$PendingTasks + 1", "$PendingTasks is a sample history; use $PendingTasks.GetSample(...) to read it"),
    ],
)
def test_evaluation_errors(expression, detail):
    error = _evaluation_error(f"x = {expression};")
    assert error.code == EVALUATION_ERROR
    assert error.message == "Autoscale evaluation failed due to an error in the formula"
    (name, value), = error.values
    assert name == "Message"
    assert value.startswith("Line 1, Col ")
    assert detail in value


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("$TargetDedicatedNodes = {1};", "$TargetDedicatedNodes must be a double, got doubleVec"),
        ("$TargetLowPriority = time();", "$TargetLowPriority must be a double, got timestamp"),
        ("$NodeDeallocationOption = 1;", "$NodeDeallocationOption must be one of"),
        ("$NodeDeallocationOption = requeu;", "Undefined variable requeu"),
        ("$TargetDedicatedNodes = 1e308 * 10;", "$TargetDedicatedNodes is not a finite number"),
    ],
)
def test_invalid_values_for_service_variables(text, detail):
    error = _evaluation_error(text)
    assert error.code == EVALUATION_ERROR
    assert detail in error.values[0][1]


def test_errors_abort_before_later_statements_change_targets():
    error = _evaluation_error("$TargetDedicatedNodes = 1 / 0; $TargetDedicatedNodes = 5;", scalars={"$TargetDedicatedNodes": 2})
    assert error.results.startswith("$TargetDedicatedNodes=2;")
