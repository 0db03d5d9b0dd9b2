"""The doc's sample formulas and real published service answers, end to end."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from .autoscale_helpers import NOW, history, result_values, run

PENDING_TASKS_FORMULA = """
startingNumberOfVMs = 1;
maxNumberofVMs = 25;
pendingTaskSamplePercent = $PendingTasks.GetSamplePercent(180 * TimeInterval_Second);
pendingTaskSamples = pendingTaskSamplePercent < 70 ? startingNumberOfVMs : avg($PendingTasks.GetSample(180 * TimeInterval_Second));
$TargetDedicatedNodes=min(maxNumberofVMs, pendingTaskSamples);
$NodeDeallocationOption = taskcompletion;
"""


def test_pending_tasks_formula_averages_the_last_three_minutes():
    samples = {"$PendingTasks": history([100, 100, 4, 5, 6, 7, 8, 9])}  # last 180 s: 4..9
    outcome = run(PENDING_TASKS_FORMULA, samples)
    assert outcome.target_dedicated == 6  # avg 6.5 truncated
    assert outcome.node_deallocation_option == "taskcompletion"
    assert result_values(outcome.results)["pendingTaskSamples"] == "6.5"
    assert result_values(outcome.results)["pendingTaskSamplePercent"] == "100"


def test_pending_tasks_formula_is_capped_at_the_maximum():
    assert run(PENDING_TASKS_FORMULA, {"$PendingTasks": history([80] * 6)}).target_dedicated == 25


def test_pending_tasks_formula_falls_back_to_the_starting_size_without_enough_samples():
    samples = {"$PendingTasks": history([40, 40, 40])}  # 3 of 6 expected samples: 50 %
    outcome = run(PENDING_TASKS_FORMULA, samples)
    assert outcome.target_dedicated == 1
    assert result_values(outcome.results)["pendingTaskSamplePercent"] == "50"


def test_pending_tasks_formula_with_zero_start_scales_to_zero():
    formula = PENDING_TASKS_FORMULA.replace("startingNumberOfVMs = 1", "startingNumberOfVMs = 0")
    assert run(formula, {"$PendingTasks": history([0] * 6)}, {"$TargetDedicatedNodes": 3}).target_dedicated == 0
    assert run(formula, {}, {"$TargetDedicatedNodes": 3}).target_dedicated == 0


PREEMPTED_FORMULA = """
maxNumberofVMs = 25;
$TargetDedicatedNodes = min(maxNumberofVMs, $PreemptedNodeCount.GetSample(180 * TimeInterval_Second));
$TargetLowPriorityNodes = min(maxNumberofVMs , maxNumberofVMs - $TargetDedicatedNodes);
$NodeDeallocationOption = taskcompletion;
"""


def test_preempted_nodes_formula_replaces_spot_nodes_with_dedicated_ones():
    samples = {"$PreemptedNodeCount": history([3, 4, 5, 5, 5, 5])}
    outcome = run(PREEMPTED_FORMULA, samples)
    assert (outcome.target_dedicated, outcome.target_low_priority) == (3, 22)


def test_preempted_nodes_formula_without_samples_fails_instead_of_25_dedicated_nodes():
    # GetSample(180 s) without a percentage needs 70 % of its samples (batch-shipyard#138): with no history
    # the evaluation fails and the pool keeps its size, rather than min(25, []) = 25 dedicated nodes, the
    # opposite of the doc's "starts with 25 low-priority nodes".
    from devstack.batch_emulator.autoscale import AutoScaleError
    with pytest.raises(AutoScaleError) as caught:
        run(PREEMPTED_FORMULA, {})
    assert caught.value.code == "InsufficientSampleData"
    quiet = run(PREEMPTED_FORMULA, {"$PreemptedNodeCount": history([0] * 6)})
    assert (quiet.target_dedicated, quiet.target_low_priority) == (0, 25)


# Doc "Example 2: Task-based adjustment", verbatim.
TASK_BASED_FORMULA = """
// Get pending tasks for the past 15 minutes.
$samples = $PendingTasks.GetSamplePercent(TimeInterval_Minute * 15);
// If we have fewer than 70 percent data points, we use the last sample point,
// otherwise we use the maximum of last sample point and the history average.
$tasks = $samples < 70 ? max(0,$PendingTasks.GetSample(1)) : max( $PendingTasks.GetSample(1), avg($PendingTasks.GetSample(TimeInterval_Minute * 15)));
// If number of pending tasks is not 0, set targetVM to pending tasks, otherwise
// half of current dedicated.
$targetVMs = $tasks > 0? $tasks:max(0, $TargetDedicatedNodes/2);
// The pool size is capped at 20, if target VM value is more than that, set it
// to 20. This value should be adjusted according to your use case.
$TargetDedicatedNodes = max(0, min($targetVMs, 20));
// Set node deallocation mode - let running tasks finish before removing a node
$NodeDeallocationOption = taskcompletion;
"""


@pytest.mark.parametrize(("current", "expected"), [(8, 4), (4, 2), (3, 1), (1, 0), (0, 0)])
def test_example_2_halves_an_idle_pool_toward_zero(current, expected):
    samples = {"$PendingTasks": history([0] * 30)}
    outcome = run(TASK_BASED_FORMULA, samples, {"$TargetDedicatedNodes": current})
    assert outcome.target_dedicated == expected


def test_example_2_follows_pending_tasks_up_to_the_cap():
    samples = {"$PendingTasks": history([2] * 29 + [12])}
    outcome = run(TASK_BASED_FORMULA, samples, {"$TargetDedicatedNodes": 1})
    assert outcome.target_dedicated == 12
    assert run(TASK_BASED_FORMULA, {"$PendingTasks": history([50] * 30)}).target_dedicated == 20


def test_real_service_answer_for_example_2_is_reproduced_exactly():
    """Published pool JSON (2025): 29 of 30 samples, all zero, on a 1-node pool."""
    formula = TASK_BASED_FORMULA.replace("$PendingTasks", "$ActiveTasks").replace(
        "$TargetDedicatedNodes = max(0, min($targetVMs, 20));",
        "cappedPoolSize = 3;\n$TargetDedicatedNodes = max(1, min($targetVMs, cappedPoolSize));",
    )
    now = datetime(2025, 4, 24, 11, 34, 37, 971000, tzinfo=timezone.utc)
    samples = {"$ActiveTasks": history([0] * 29, end=now - timedelta(seconds=30), period=timedelta(seconds=30))}
    outcome = run(formula, samples, {"$TargetDedicatedNodes": 1}, now=now)
    assert outcome.results == (
        "$TargetDedicatedNodes=1;$TargetLowPriorityNodes=0;$NodeDeallocationOption=taskcompletion;"
        "$samples=96.6667;$targetVMs=0.5;$tasks=0;cappedPoolSize=3"
    )
    assert outcome.target_dedicated == 1


# Doc "Example 3: Accounting for parallel tasks", with $TaskSlotsPerNode for the literal 4.
TASK_SLOTS_FORMULA = """
$samples = $ActiveTasks.GetSamplePercent(TimeInterval_Minute * 15);
$tasks = $samples < 70 ? max(0,$ActiveTasks.GetSample(1)) : max( $ActiveTasks.GetSample(1),avg($ActiveTasks.GetSample(TimeInterval_Minute * 15)));
$cores = $TargetDedicatedNodes * $TaskSlotsPerNode;
$extraVMs = (($tasks - $cores) + ($TaskSlotsPerNode - 1)) / $TaskSlotsPerNode;
$targetVMs = ($TargetDedicatedNodes + $extraVMs);
$TargetDedicatedNodes = max(0,min($targetVMs,3));
$NodeDeallocationOption = taskcompletion;
"""


@pytest.mark.parametrize(
    ("active", "slots", "expected"),
    [(9, 4, 3), (8, 4, 2), (5, 4, 2), (1, 4, 1), (0, 4, 0), (2, 1, 2), (40, 4, 3)],
)
def test_task_slot_division_rounds_up_by_adding_slots_minus_one(active, slots, expected):
    samples = {"$ActiveTasks": history([active] * 30)}
    outcome = run(TASK_SLOTS_FORMULA, samples, {"$TaskSlotsPerNode": slots, "$TargetDedicatedNodes": 0})
    assert outcome.target_dedicated == expected


def test_simple_task_slot_division_truncates():
    formula = "$TargetDedicatedNodes = max($PendingTasks.GetSample(1)) / $TaskSlotsPerNode;"
    assert run(formula, {"$PendingTasks": history([10])}, {"$TaskSlotsPerNode": 4}).target_dedicated == 2


# Doc "Example 1: Time-based adjustment".
TIME_BASED_FORMULA = """
$curTime = time();
$workHours = $curTime.hour >= 8 && $curTime.hour < 18;
$isWeekday = $curTime.weekday >= 1 && $curTime.weekday <= 5;
$isWorkingWeekdayHour = $workHours && $isWeekday;
$TargetDedicatedNodes = $isWorkingWeekdayHour ? 20:10;
$NodeDeallocationOption = taskcompletion;
"""


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2025, 4, 28, 10, 0, tzinfo=timezone.utc), 20),  # Monday 10:00
        (datetime(2025, 4, 28, 18, 0, tzinfo=timezone.utc), 10),  # Monday 18:00
        (datetime(2025, 5, 2, 8, 0, tzinfo=timezone.utc), 20),  # Friday 08:00
        (datetime(2025, 5, 3, 12, 0, tzinfo=timezone.utc), 10),  # Saturday
        (datetime(2025, 5, 4, 12, 0, tzinfo=timezone.utc), 10),  # Sunday
    ],
)
def test_example_1_time_based_adjustment(now, expected):
    assert run(TIME_BASED_FORMULA, now=now).target_dedicated == expected


def test_example_1_results_have_the_doc_shape():
    now = datetime(2016, 10, 14, 18, 36, 43, 282000, tzinfo=timezone.utc)
    formula = TIME_BASED_FORMULA.replace("$NodeDeallocationOption = taskcompletion;", "")
    outcome = run(formula, now=now)
    # Doc "Get information about autoscale runs" sample output for the same formula.
    assert outcome.results == (
        "$TargetDedicatedNodes=10;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue;"
        "$curTime=2016-10-14T18:36:43.282Z;$isWeekday=1;$isWorkingWeekdayHour=0;$workHours=0"
    )


# Doc "Example 4: Setting an initial pool size" (C# format placeholders filled in).
INITIAL_SIZE_FORMULA = """
    $TargetDedicatedNodes = 4;
    lifespan         = time() - time("Mon, 28 Apr 2025 09:55:00 GMT");
    span             = TimeInterval_Minute * 60;
    startup          = TimeInterval_Minute * 10;
    ratio            = 50;

    $TargetDedicatedNodes = (lifespan > startup ? (max($RunningTasks.GetSample(span, ratio), $ActiveTasks.GetSample(span, ratio)) == 0 ? 0 : $TargetDedicatedNodes) : 4);
"""


def test_example_4_keeps_the_initial_size_during_startup():
    assert run(INITIAL_SIZE_FORMULA).target_dedicated == 4  # NOW is 5 minutes after creation


def test_example_4_scales_to_zero_after_startup_when_idle():
    later = NOW + timedelta(minutes=30)
    idle = history([0] * 120, end=later)
    outcome = run(INITIAL_SIZE_FORMULA, {"$RunningTasks": idle, "$ActiveTasks": idle}, now=later)
    assert outcome.target_dedicated == 0
    busy = {"$RunningTasks": history([0] * 119 + [1], end=later), "$ActiveTasks": idle}
    assert run(INITIAL_SIZE_FORMULA, busy, now=later).target_dedicated == 4
