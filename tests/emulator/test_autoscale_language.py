"""Each construct of the autoscale formula language, evaluated through the public interface."""
from __future__ import annotations

from datetime import timedelta

import pytest

from devstack.batch_emulator.autoscale import EVALUATION_ERROR, AutoScaleError, compile_formula, evaluate

from .autoscale_helpers import NOW, history, inputs, result_values, run, value_of


# ----- statements, comments, variables ------------------------------------------------------
def test_statements_comments_and_newlines():
    outcome = run(
        """
        // leading comment
        a = 2;   // trailing comment
        $b =
            a * 3;
        ;;
        c = $b + 1
        """
    )
    assert result_values(outcome.results) == {
        "$TargetDedicatedNodes": "0",
        "$TargetLowPriorityNodes": "0",
        "$NodeDeallocationOption": "requeue",
        "$b": "6",
        "a": "2",
        "c": "7",
    }


def test_later_assignment_overwrites_and_reads_see_the_latest_value():
    outcome = run("x = 1; y = x; x = x + 10;")
    assert result_values(outcome.results)["x"] == "11"
    assert result_values(outcome.results)["y"] == "1"


def test_dollar_and_plain_user_variables_are_distinct_names():
    values = result_values(run("x = 1; $x = 2;").results)
    assert (values["x"], values["$x"]) == ("1", "2")


def test_results_list_targets_first_then_user_variables_sorted_without_trailing_semicolon():
    outcome = run("zeta = 1; $beta = 2; Alpha = 3; $alpha = 4; $TargetDedicatedNodes = 5;")
    assert outcome.results == (
        "$TargetDedicatedNodes=5;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue;"
        "$alpha=4;$beta=2;Alpha=3;zeta=1"
    )


# ----- targets and the deallocation option --------------------------------------------------
def test_unassigned_targets_keep_the_current_targets():
    outcome = run("x = 1;", scalars={"$TargetDedicatedNodes": 4, "$TargetLowPriorityNodes": 2})
    assert (outcome.target_dedicated, outcome.target_low_priority) == (4, 2)
    assert outcome.node_deallocation_option is None
    assert outcome.results.startswith("$TargetDedicatedNodes=4;$TargetLowPriorityNodes=2;")


def test_targets_read_as_current_target_before_assignment():
    outcome = run("$TargetDedicatedNodes = $TargetDedicatedNodes + 1;", scalars={"$TargetDedicatedNodes": 3})
    assert outcome.target_dedicated == 4


@pytest.mark.parametrize(
    ("assigned", "expected"),
    [("2.9", 2), ("0.5", 0), ("3", 3), ("-4", 0), ("-0.5", 0), ("1000", 1000)],
)
def test_targets_are_truncated_toward_zero_and_clamped_at_zero(assigned, expected):
    outcome = run(f"$TargetDedicatedNodes = {assigned}; $TargetLowPriorityNodes = {assigned};")
    assert (outcome.target_dedicated, outcome.target_low_priority) == (expected, expected)


def test_results_show_the_formula_value_of_a_fractional_target():
    assert run("$TargetDedicatedNodes = 2.5;").results.startswith("$TargetDedicatedNodes=2.5;")


def test_aliases_set_the_targets():
    outcome = run("$TargetDedicated = 3; $TargetLowPriority = 2;")
    assert (outcome.target_dedicated, outcome.target_low_priority) == (3, 2)
    assert outcome.results.startswith("$TargetDedicatedNodes=3;$TargetLowPriorityNodes=2;")


def test_full_name_takes_precedence_over_alias_whatever_the_order():
    outcome = run("$TargetDedicatedNodes = 5; $TargetDedicated = 9;")
    assert outcome.target_dedicated == 5
    outcome = run("$TargetLowPriority = 9; $TargetLowPriorityNodes = 1;")
    assert outcome.target_low_priority == 1


@pytest.mark.parametrize("option", ["requeue", "terminate", "taskcompletion", "retaineddata"])
def test_node_deallocation_options(option):
    outcome = run(f"$NodeDeallocationOption = {option};")
    assert outcome.node_deallocation_option == option
    assert f"$NodeDeallocationOption={option}" in outcome.results


def test_deallocation_option_can_pass_through_a_user_variable():
    assert run("o = terminate; $NodeDeallocationOption = o;").node_deallocation_option == "terminate"


# ----- arithmetic and type rules (doc "Operations") -------------------------------------------
@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("10 - 4 - 3", "3"),
        ("24 / 4 / 3", "2"),
        ("7 / 2", "3.5"),
        ("-3 + 1", "-2"),
        ("--3", "3"),
        ("2 * -3", "-6"),
        ("!0", "1"),
        ("!5", "0"),
        ("!!7", "1"),
        ("1 < 2", "1"),
        ("2 <= 2", "1"),
        ("3 == 3", "1"),
        ("3 != 3", "0"),
        ("3 >= 4", "0"),
        ("3 > 4", "0"),
        ("1 + 1 == 2", "1"),
        ("1 < 2 == 1", "1"),
        ("1 && 2", "1"),
        ("1 && 0", "0"),
        ("0 || 3", "1"),
        ("0 || 0", "0"),
        ("1 || 0 && 0", "1"),
        ("1 ? 10 : 20", "10"),
        ("0 ? 10 : 20", "20"),
        ("0.5 ? 10 : 20", "10"),
        ("0 ? 1 : 0 ? 2 : 3", "3"),
        ("1 ? 0 ? 5 : 6 : 7", "6"),
        ("1.5e2", "150"),
        (".25", "0.25"),
        ("1 / 3", "0.333333"),
        ("123456789", "1.23457e+08"),
    ],
)
def test_double_expressions(expression, expected):
    assert value_of(expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("{1, 2, 3}", "[1,2,3]"),
        ("{}", "[]"),
        ("{1, {2, 3}}", "[1,2,3]"),
        ("{1, 2} + 1", "[2,3]"),
        ("{4, 6} / 2", "[2,3]"),
        ("{1, 2} * {3, 4}", "[3,8]"),
        ("{5, 5} - {1, 2}", "[4,3]"),
    ],
)
def test_double_vector_expressions(expression, expected):
    assert value_of(expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("TimeInterval_Zero", "00:00:00"),
        ("TimeInterval_100ns", "00:00:00.0000001"),
        ("TimeInterval_Millisecond", "00:00:00.0010000"),
        ("TimeInterval_Second * 90", "00:01:30"),
        ("180 * TimeInterval_Second", "00:03:00"),
        ("TimeInterval_Hour / 4", "00:15:00"),
        ("TimeInterval_Day + TimeInterval_Hour", "1.01:00:00"),
        ("TimeInterval_Week - TimeInterval_Day", "6.00:00:00"),
        ("TimeInterval_Year", "365.00:00:00"),
        ("-TimeInterval_Minute", "-00:01:00"),
        ("TimeInterval_Minute < TimeInterval_Hour", "1"),
        ("TimeInterval_Minute * 60 == TimeInterval_Hour", "1"),
    ],
)
def test_time_interval_expressions(expression, expected):
    assert value_of(expression) == expected


def test_timestamp_arithmetic_and_members():
    assert value_of("time()") == "2025-04-28T10:00:00.000Z"
    assert value_of("time() + 90 * TimeInterval_Minute") == "2025-04-28T11:30:00.000Z"
    assert value_of("TimeInterval_Day + time()") == "2025-04-29T10:00:00.000Z"
    assert value_of("time() + (-6 * TimeInterval_Hour)") == "2025-04-28T04:00:00.000Z"
    assert value_of('time() - time("2025-04-28T09:00:00Z")') == "01:00:00"
    assert value_of('time("2025-01-01") < time()') == "1"
    members = {m: value_of(f"time().{m}") for m in ("year", "month", "day", "weekday", "hour", "minute", "second")}
    assert members == {"year": "2025", "month": "4", "day": "28", "weekday": "1", "hour": "10", "minute": "0", "second": "0"}
    assert value_of('time("2025-04-27T00:00:00Z").weekday') == "0"  # Sunday


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025", "2025-01-01T00:00:00.000Z"),
        ("2025-04", "2025-04-01T00:00:00.000Z"),
        ("2025-04-28", "2025-04-28T00:00:00.000Z"),
        ("2025-04-28T10:20Z", "2025-04-28T10:20:00.000Z"),
        ("2025-04-28T10:20:30.5Z", "2025-04-28T10:20:30.500Z"),
        ("2025-04-28T10:20:30.1234567Z", "2025-04-28T10:20:30.123Z"),
        ("2025-04-28T12:20:30+02:00", "2025-04-28T10:20:30.000Z"),
        ("2025-04-28T05:20:30-05:00", "2025-04-28T10:20:30.000Z"),
        ("Mon, 28 Apr 2025 10:20:30 GMT", "2025-04-28T10:20:30.000Z"),
    ],
)
def test_time_parses_w3c_dtf_and_rfc_1123(text, expected):
    assert value_of(f'time("{text}")') == expected


def test_strings_compare():
    assert value_of('"abc" < "abd"') == "1"
    assert value_of('"abc" == "abc"') == "1"


# ----- functions (doc "Functions") ---------------------------------------------------------
@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("avg(1, 2, 3, 6)", "3"),
        ("avg({1, 2, 3}, 7)", "3.25"),
        ("len({1, 2, 3}, 7)", "4"),
        ("len({})", "0"),
        ("lg(8)", "3"),
        ("lg({2, 4})", "[1,2]"),
        ("lg(2, 4)", "[1,2]"),
        ("ln(1)", "0"),
        ("log(1000)", "3"),
        ("log({10, 100})", "[1,2]"),
        ("max(3, {7, 1}, 2)", "7"),
        ("min(3, {7, 1}, 2)", "1"),
        ("max(5)", "5"),
        ("norm(3, 4)", "5"),
        ("percentile({10, 20, 30, 40}, 50)", "20"),
        ("percentile({10, 20, 30, 40}, 100)", "40"),
        ("percentile({10, 20, 30, 40}, 0)", "10"),
        ("percentile({40, 10, 30, 20}, 75)", "30"),
        ("range({4, 9, 1})", "8"),
        ("std(2, 4, 4, 4, 5, 5, 7, 9)", "2.13809"),
        ("sum({1, 2}, 3)", "6"),
        ("sum({})", "0"),
        ("val({5, 6, 7}, 0)", "5"),
        ("val({5, 6, 7}, 2)", "7"),
        ("rand()", "0.25"),
    ],
)
def test_functions(expression, expected):
    assert value_of(expression) == expected


def test_stop_ends_the_evaluation_successfully_with_the_values_so_far():
    outcome = run("$TargetDedicatedNodes = 3; a = 1; stop(); $TargetDedicatedNodes = 9; b = 2;")
    assert outcome.target_dedicated == 3
    assert "b" not in result_values(outcome.results)
    assert result_values(outcome.results)["a"] == "1"


def test_stop_inside_a_conditional_only_when_taken():
    assert run("$TargetDedicatedNodes = 1; 0 ? stop() : 0; $TargetDedicatedNodes = 2;").target_dedicated == 2
    assert run("$TargetDedicatedNodes = 1; 1 ? stop() : 0; $TargetDedicatedNodes = 2;").target_dedicated == 1


# ----- metrics and samples (doc "Obtain sample data") -------------------------------------
def _pending(values):
    return {"$PendingTasks": history(values)}


def test_get_sample_count_returns_the_most_recent_samples_oldest_first():
    samples = _pending([1, 2, 3, 4, 5])
    assert value_of("$PendingTasks.GetSample(1)", samples) == "[5]"
    assert value_of("$PendingTasks.GetSample(3)", samples) == "[3,4,5]"
    assert value_of("$PendingTasks.GetSample(10)", samples) == "[1,2,3,4,5]"
    assert value_of("$PendingTasks.GetSample(0)", samples) == "[]"
    assert value_of("$PendingTasks.GetSample(1)") == "[]"  # no history yet


def test_get_sample_interval_returns_samples_in_the_look_back_window():
    samples = _pending(range(1, 21))  # 20 samples, newest at NOW
    assert value_of("$PendingTasks.GetSample(TimeInterval_Minute * 2)", samples) == "[17,18,19,20]"
    assert value_of("$PendingTasks.GetSample(TimeInterval_Minute * 2, 100)", samples) == "[17,18,19,20]"


def test_get_sample_start_and_end_intervals_in_either_order():
    samples = _pending(range(1, 21))
    expected = "[15,16,17,18]"  # (NOW-3min, NOW-1min]
    assert value_of("$PendingTasks.GetSample(TimeInterval_Minute * 1, TimeInterval_Minute * 3)", samples) == expected
    assert value_of("$PendingTasks.GetSample(TimeInterval_Minute * 3, TimeInterval_Minute * 1)", samples) == expected
    assert (
        value_of("$PendingTasks.GetSample(TimeInterval_Minute * 1, TimeInterval_Minute * 3, 100)", samples) == expected
    )


def test_get_sample_with_timestamps():
    samples = _pending(range(1, 21))
    assert value_of("$PendingTasks.GetSample(time() + -2 * TimeInterval_Minute)", samples) == "[17,18,19,20]"
    assert (
        value_of(
            '$PendingTasks.GetSample(time("2025-04-28T09:57:00Z"), time("2025-04-28T09:59:00Z"))', samples
        )
        == "[15,16,17,18]"
    )


def test_get_sample_percent_and_the_doc_10_minute_example():
    # Doc: 10 minutes = 20 samples; with the last minute missing only 18 are there (90 %).
    samples = {"$CPUPercent": history([50.0] * 18, end=NOW - timedelta(minutes=1))}
    assert value_of("$CPUPercent.GetSamplePercent(TimeInterval_Minute * 10)", samples) == "90"
    assert value_of("len($CPUPercent.GetSample(TimeInterval_Minute * 10, 80))", samples) == "18"
    assert value_of("$CPUPercent.GetSamplePercent(TimeInterval_Minute * 1, TimeInterval_Minute * 10)", samples) == "100"
    assert value_of("$CPUPercent.GetSamplePercent(TimeInterval_Minute * 10)") == "0"


def test_other_metric_methods():
    samples = _pending([3, 4, 5])
    assert value_of("$PendingTasks.GetSamplePeriod()", samples) == "00:00:30"
    assert value_of("$PendingTasks.Count()", samples) == "3"
    assert value_of("$PendingTasks.HistoryBeginTime()", samples) == "2025-04-28T09:59:00.000Z"
    assert value_of("$CPUPercent.Count()") == "0"


def test_metric_without_current_value_cannot_be_used_as_a_double():
    with pytest.raises(AutoScaleError) as caught:
        run("x = max(0, $PendingTasks);", _pending([1]))
    assert caught.value.code == EVALUATION_ERROR
    assert "GetSample" in caught.value.values[0][1]


def test_node_count_variables_are_doubles_and_sample_histories():
    scalars = {"$CurrentDedicatedNodes": 10, "$PreemptedNodeCount": 2, "$TaskSlotsPerNode": 4}
    samples = {"$PreemptedNodeCount": history([0, 1, 2])}
    assert value_of("$CurrentDedicatedNodes * 1.1", samples, scalars) == "11"
    assert value_of("$PreemptedNodeCount + $TaskSlotsPerNode", samples, scalars) == "6"
    assert value_of("$PreemptedNodeCount.GetSample(2)", samples, scalars) == "[1,2]"
    aliased = run("m = $PreemptedNodeCount; last = m.GetSample(1);", samples, scalars)
    assert result_values(aliased.results)["last"] == "[2]"


# Az PowerShell help, Test-AzBatchAutoScale example 1 (azure-powershell, Batch/help/Test-AzBatchAutoScale.md):
# the formula below, recorded result "$TargetDedicated=5;$NodeDeallocationOption=requeue;totalNodes=5" (a pool
# without CPU samples). $CurrentDedicated is the pre-2017 name of $CurrentDedicatedNodes (the doc's
# variable tables of 2015-2016 list it).
POWERSHELL_EXAMPLE = (
    "totalNodes=($CPUPercent.GetSamplePercent(TimeInterval_Minute*0,TimeInterval_Minute*10)<0.7?5:"
    "(min($CPUPercent.GetSample(TimeInterval_Minute*0, TimeInterval_Minute*10))>0.8?"
    "($CurrentDedicated*1.1):$CurrentDedicated));$TargetDedicated=min(100,totalNodes);"
)


def test_legacy_current_dedicated_reads_current_dedicated_nodes():
    scalars = {"$CurrentDedicatedNodes": 10}
    assert value_of("$CurrentDedicated * 1.1", None, scalars) == "11"
    assert run(POWERSHELL_EXAMPLE, None, scalars).target_dedicated == 5  # the recorded answer: no CPU samples
    busy = {"$CPUPercent": history([90.0] * 20)}
    assert run(POWERSHELL_EXAMPLE, busy, scalars).target_dedicated == 11
    idle = {"$CPUPercent": history([0.5] * 20)}  # the formula compares with 0.8, not 80
    assert run(POWERSHELL_EXAMPLE, idle, scalars).target_dedicated == 10
    with pytest.raises(AutoScaleError) as caught:
        run("$CurrentDedicated = 3;", None, scalars)
    assert "read-only" in caught.value.values[0][1]


def test_no_current_low_priority_alias_is_on_record():
    with pytest.raises(AutoScaleError) as caught:
        run("x = $CurrentLowPriority;")
    assert "Undefined variable $CurrentLowPriority" in caught.value.values[0][1]


def test_val_of_an_empty_history_reads_zero_as_the_service_went_past_it():
    # batch-shipyard#138: `lastsample = val($PendingTasks.GetSample(1), 0)` on a new pool did not fail
    # (the evaluation failed on the next line); see test_autoscale_errors.SHIPYARD_PENDING_TASKS_FORMULA.
    assert value_of("val($PendingTasks.GetSample(1), 0)") == "0"
    assert value_of("val($PendingTasks.GetSample(1), 0)", _pending([4])) == "4"
    with pytest.raises(AutoScaleError):
        run("x = val({1, 2}, 5);")


def test_every_documented_read_only_variable_is_known():
    names = [
        "$CPUPercent", "$WallClockSeconds", "$MemoryBytes", "$DiskBytes", "$DiskReadBytes", "$DiskWriteBytes",
        "$DiskReadOps", "$DiskWriteOps", "$NetworkInBytes", "$NetworkOutBytes", "$SampleNodeCount",
        "$ActiveTasks", "$RunningTasks", "$PendingTasks", "$SucceededTasks", "$FailedTasks",
        "$TaskSlotsPerNode", "$CurrentDedicatedNodes", "$CurrentLowPriorityNodes", "$PreemptedNodeCount",
        "$UsableNodeCount",
    ]  # fmt: skip
    formula = ";".join(f"c{i} = {name}.Count()" for i, name in enumerate(names))
    values = result_values(run(formula).results)
    assert [values[f"c{i}"] for i in range(len(names))] == ["0"] * len(names)


def test_short_circuit_skips_a_failing_right_hand_side():
    guarded = "$CPUPercent.GetSample(TimeInterval_Minute, 100)"
    assert value_of(f"0 && len({guarded})") == "0"
    assert value_of(f"1 || len({guarded})") == "1"
    assert value_of(f"0 ? len({guarded}) : 4") == "4"


def test_compiled_formula_is_reusable_across_evaluations():
    formula = compile_formula("$TargetDedicatedNodes = max($PendingTasks.GetSample(1));")
    assert evaluate(formula, inputs(_pending([3]))).target_dedicated == 3
    assert evaluate(formula, inputs(_pending([7]))).target_dedicated == 7
