"""Public autoscale formulas, with their sources, run against the Batch emulator (issue 16).

Each formula is evaluated in a situation: a new pool (no samples), or a pool that has been running for an hour
(the metrics the formula names, one sample per 30 s up to now), or the history under which a published service
answer was recorded. Either way formulas see a sample only once the sample lag (60 s, the docs' "approximately
one minute") has passed. Through the SDK (`run_through_sdk`: azure-batch creates a
pool, the emulator's admin route sets its metric history, `evaluate_pool_auto_scale` answers) or in process
against any copy of the formula engine (`run_in_process`, e.g. the engine before issue 16).

Columns: *parsed* - accepted (no AutoScalingFormulaSyntaxError); *evaluated* - an autoScaleRun without error;
*correct* - equal to what the service answered, for the formulas where that is on record (`Known`).

    .venv/bin/python -m devstack.compat.formulas                  # through the SDK, this tree's emulator
    .venv/bin/python -m devstack.compat.formulas --before b8d2149~1   # plus that commit's engine, in process
"""
from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

SAMPLE_PERIOD = timedelta(seconds=30)
SERVICE_LAG = timedelta(seconds=60)   # the emulator's default lag at the service's 30 s period
HOUR_OF_SAMPLES = 120
# A pool that has been busy for an hour: the value every sample of each metric has.
RUNNING_POOL = {"$PendingTasks": 4.0, "$ActiveTasks": 3.0, "$RunningTasks": 1.0, "$SucceededTasks": 1.0,
                "$FailedTasks": 0.0, "$CPUPercent": 55.0, "$PreemptedNodeCount": 0.0, "$MemoryBytes": 2e9,
                "$WallClockSeconds": 30.0}
NEW, RUNNING, RECORDED = "new pool", "running pool", "as recorded"


@dataclass(frozen=True)
class Known:
    """What the service answered (``record``), as results variables and/or an error."""
    record: str
    results: dict[str, str] = field(default_factory=dict)   # variable -> value, a subset of autoScaleRun.results
    exact_results: str | None = None                        # the whole results string
    error_code: str | None = None
    error_message: str | None = None                        # the error's "Message" value, exactly
    max_lag_seconds: float | None = None                    # the record is only possible with a lag up to this


@dataclass(frozen=True)
class PublicFormula:
    key: str
    source: str
    text: str
    situation: str = RUNNING
    history: dict[str, list[float]] = field(default_factory=dict)   # RECORDED: oldest first, 30 s apart
    newest_age: float = 0.0                                          # seconds since the newest sample was taken
    target: int = 0                                                  # the pool's current dedicated target
    known: Known | None = None

    def series(self) -> dict[str, list[float]]:
        if self.situation == RECORDED:
            return dict(self.history)
        if self.situation == NEW:
            return {}
        names = set(re.findall(r"\$\w+", self.text))
        return {name: [value] * HOUR_OF_SAMPLES for name, value in RUNNING_POOL.items() if name in names}


DOCS = "MicrosoftDocs/azure-docs articles/batch/batch-automatic-scaling.md"
SHIPYARD = "Azure/batch-shipyard convoy/autoscale.py@75157e9 (_formula_tasks / _formula_day_of_week)"
DOAZP = "Azure/doAzureParallel R/autoscale.R"

_SHIPYARD_HEAD = ("maxTasksPerNode = 1;\nminTargetDedicated = 0;\nminTargetLowPriority = 0;\n"
                  "maxTargetDedicated = 4;\nmaxTargetLowPriority = 0;\n")
_SHIPYARD_TAIL = ("dedicatedVMs = min(maxTargetDedicated, max(minTargetDedicated, reqVMs));\n"
                  "$TargetDedicatedNodes = dedicatedVMs;\n"
                  "$TargetLowPriorityNodes = max(minTargetLowPriority, min(maxTargetLowPriority, reqVMs - dedicatedVMs));\n"
                  "$NodeDeallocationOption = taskcompletion;")
_SHIPYARD_BIAS = (
    "sli = TimeInterval_Second * 900.0;\n"
    "samplepercent = ${t}Tasks.GetSamplePercent(sli);\n"
    "lastsample = val(${t}Tasks.GetSample(1), 0);\n"
    "samplevecavg = avg(${t}Tasks.GetSample(sli));\n"
    "{t}TaskAvg = samplepercent < 70 ? max(0, lastsample) : (lastsample < samplevecavg ? avg(lastsample, samplevecavg) "
    ": max(lastsample, samplevecavg));\n"
    "reqVMs = {t}TaskAvg / maxTasksPerNode;\npreemptcount = 0;\nrebalance = 0 == 1;\n")
_SHIPYARD_PLAIN = (
    "sli = TimeInterval_Second * 900.0;\n"
    "{t}TaskAvg = avg(${t}Tasks.GetSample(sli, 70));\n"
    "reqVMs = {t}TaskAvg / maxTasksPerNode;\n"
    "reqVMs = ({t}TaskAvg > 0 && reqVMs < 1) ? 1 : reqVMs;\npreemptcount = 0;\nrebalance = 0 == 1;\n")
_SHIPYARD_DAY = ("now = time();\nisWorkHours = now.hour >= 8 && now.hour < 18;\n"
                 "isWeekday = now.weekday >= 1 && now.weekday <= 5;\n")

FORMULAS: tuple[PublicFormula, ...] = (
    # ----- Microsoft's autoscale docs ------------------------------------------------------------------
    PublicFormula("docs-pending-tasks", f"{DOCS} (Sample autoscale formulas: Pending tasks)", """
startingNumberOfVMs = 1;
maxNumberofVMs = 25;
pendingTaskSamplePercent = $PendingTasks.GetSamplePercent(180 * TimeInterval_Second);
pendingTaskSamples = pendingTaskSamplePercent < 70 ? startingNumberOfVMs : avg($PendingTasks.GetSample(180 * TimeInterval_Second));
$TargetDedicatedNodes=min(maxNumberofVMs, pendingTaskSamples);
$NodeDeallocationOption = taskcompletion;"""),
    PublicFormula("docs-preempted-nodes", f"{DOCS} (Sample autoscale formulas: Preempted nodes)", """
maxNumberofVMs = 25;
$TargetDedicatedNodes = min(maxNumberofVMs, $PreemptedNodeCount.GetSample(180 * TimeInterval_Second));
$TargetLowPriorityNodes = min(maxNumberofVMs , maxNumberofVMs - $TargetDedicatedNodes);
$NodeDeallocationOption = taskcompletion;"""),
    PublicFormula("docs-preempted-nodes-new", f"{DOCS} (Preempted nodes), on a pool with no samples yet", """
maxNumberofVMs = 25;
$TargetDedicatedNodes = min(maxNumberofVMs, $PreemptedNodeCount.GetSample(180 * TimeInterval_Second));
$TargetLowPriorityNodes = min(maxNumberofVMs , maxNumberofVMs - $TargetDedicatedNodes);
$NodeDeallocationOption = taskcompletion;""", situation=NEW),
    PublicFormula("docs-cpu", f"{DOCS} (Write an autoscale formula: the complete formula)", """
$totalDedicatedNodes =
    (min($CPUPercent.GetSample(TimeInterval_Minute * 10)) > 0.7) ?
    ($CurrentDedicatedNodes * 1.1) : $CurrentDedicatedNodes;
$totalDedicatedNodes =
    (avg($CPUPercent.GetSample(TimeInterval_Minute * 60)) < 0.2) ?
    ($CurrentDedicatedNodes * 0.9) : $totalDedicatedNodes;
$TargetDedicatedNodes = min(400, $totalDedicatedNodes)""", target=2),
    PublicFormula("docs-cpu-2016", "MicrosoftDocs/azure-docs articles/batch/batch-automatic-scaling.md (2016 revision, "
                  "$CurrentDedicated/$TargetDedicated names)", """
$TotalNodes = (min($CPUPercent.GetSample(TimeInterval_Minute*10)) > 0.7) ? ($CurrentDedicated * 1.1) : $CurrentDedicated;
$TotalNodes = (avg($CPUPercent.GetSample(TimeInterval_Minute*60)) < 0.2) ? ($CurrentDedicated * 0.9) : $TotalNodes;
$TargetDedicated = min(400, $TotalNodes)""", target=2),
    PublicFormula("docs-example-1-time", f"{DOCS} (Example 1: Time-based adjustment)", """
$curTime = time();
$workHours = $curTime.hour >= 8 && $curTime.hour < 18;
$isWeekday = $curTime.weekday >= 1 && $curTime.weekday <= 5;
$isWorkingWeekdayHour = $workHours && $isWeekday;
$TargetDedicatedNodes = $isWorkingWeekdayHour ? 20:10;
$NodeDeallocationOption = taskcompletion;"""),
    PublicFormula("docs-example-2-tasks", f"{DOCS} (Example 2: Task-based adjustment)", """
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
$NodeDeallocationOption = taskcompletion;"""),
    PublicFormula("docs-example-3-slots", f"{DOCS} (Example 3: Accounting for parallel tasks)", """
// Determine whether 70 percent of the samples have been recorded in the past
// 15 minutes; if not, use last sample
$samples = $ActiveTasks.GetSamplePercent(TimeInterval_Minute * 15);
$tasks = $samples < 70 ? max(0,$ActiveTasks.GetSample(1)) : max( $ActiveTasks.GetSample(1),avg($ActiveTasks.GetSample(TimeInterval_Minute * 15)));
// Set the number of nodes to add to one-fourth the number of active tasks
$cores = $TargetDedicatedNodes * 4;
$extraVMs = (($tasks - $cores) + 3) / 4;
$targetVMs = ($TargetDedicatedNodes + $extraVMs);
// Attempt to grow the number of compute nodes to match the number of active
// tasks, with a maximum of 3
$TargetDedicatedNodes = max(0,min($targetVMs,3));
// Keep the nodes active until the tasks finish
$NodeDeallocationOption = taskcompletion;"""),
    PublicFormula("docs-example-4-initial", f"{DOCS} (Example 4: Setting an initial pool size; C# placeholders "
                  "filled: 4 nodes, created 2025-04-28 09:55 GMT)", """
$TargetDedicatedNodes = 4;
lifespan         = time() - time("Mon, 28 Apr 2025 09:55:00 GMT");
span             = TimeInterval_Minute * 60;
startup          = TimeInterval_Minute * 10;
ratio            = 50;

$TargetDedicatedNodes = (lifespan > startup ? (max($RunningTasks.GetSample(span, ratio), $ActiveTasks.GetSample(span, ratio)) == 0 ? 0 : $TargetDedicatedNodes) : 4);
$NodeDeallocationOption = taskcompletion;"""),
    PublicFormula("docs-running-range", f"{DOCS} (GetSample() and sample ranges)",
                  "$runningTasksSample = $RunningTasks.GetSample(1 * TimeInterval_Minute, 6 * TimeInterval_Minute);"),
    PublicFormula("docs-running-range-75", f"{DOCS} (GetSample() and sample ranges, 75 percent)",
                  "$runningTasksSample = $RunningTasks.GetSample(60 * TimeInterval_Second, 120 * TimeInterval_Second, 75);"),
    PublicFormula("docs-weekday-csharp", f"{DOCS} (.NET: CreatePool with AutoScaleFormula)",
                  "$TargetDedicatedNodes = (time().weekday == 1 ? 5:1);"),
    PublicFormula("rest-evaluate-2017", "learn.microsoft.com/rest/api/batchservice 'Evaluate an automatic scaling "
                  "formula' (ms.date 2017-02-01; the page's sample response belongs to another formula)",
                  "totalNodes=($CPUPercent.GetSamplePercent(TimeInterval_Minute*0,TimeInterval_Minute*10)<0.7?5:"
                  "(min($CPUPercent.GetSample(TimeInterval_Minute*0, TimeInterval_Minute*10))>0.8?"
                  "($CurrentDedicated*1.1):$CurrentDedicated));$targetDedicatedNodes=min(100,totalNodes);", target=2),
    # ----- recorded service answers ----------------------------------------------------------------------
    PublicFormula(
        "powershell-test-autoscale",
        "Azure/azure-powershell src/Batch/Batch/help/Test-AzBatchAutoScale.md (Example 1, with its output)",
        "totalNodes=($CPUPercent.GetSamplePercent(TimeInterval_Minute*0,TimeInterval_Minute*10)<0.7?5:"
        "(min($CPUPercent.GetSample(TimeInterval_Minute*0, TimeInterval_Minute*10))>0.8?($CurrentDedicated*1.1)"
        ":$CurrentDedicated));$TargetDedicated=min(100,totalNodes);",
        situation=NEW,
        known=Known("$TargetDedicated=5;$NodeDeallocationOption=requeue;totalNodes=5",
                    results={"totalNodes": "5", "$TargetDedicatedNodes": "5"})),
    PublicFormula(
        "powershell-test-autoscale-busy", "Azure/azure-powershell Test-AzBatchAutoScale Example 1 on a pool with "
        "an hour of CPU samples (reads $CurrentDedicated)",
        "totalNodes=($CPUPercent.GetSamplePercent(TimeInterval_Minute*0,TimeInterval_Minute*10)<0.7?5:"
        "(min($CPUPercent.GetSample(TimeInterval_Minute*0, TimeInterval_Minute*10))>0.8?($CurrentDedicated*1.1)"
        ":$CurrentDedicated));$TargetDedicated=min(100,totalNodes);", target=2),
    PublicFormula(
        "sdk-evaluate-3", "Azure/azure-sdk-for-python sdk/batch/azure-batch/tests/test_batch.py "
        "(test_batch_scale_pools; the same answer in azure-sdk-for-js and -node tests)",
        "$TargetDedicatedNodes=3", situation=NEW,
        known=Known("results '$TargetDedicatedNodes=3;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue'",
                    exact_results="$TargetDedicatedNodes=3;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue")),
    PublicFormula(
        "sdk-js-something-useless", "Azure/azure-sdk-for-js sdk/batch/batch-rest tests ('should fail to evaluate "
        "invalid autoscale formula', pool target 2)", "$something_useless", situation=NEW, target=2,
        known=Known("error AutoScalingFormulaEvaluationError, results "
                    "'$TargetDedicatedNodes=2;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue'",
                    exact_results="$TargetDedicatedNodes=2;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue",
                    error_code="AutoScalingFormulaEvaluationError")),
    PublicFormula(
        "sdk-node-something-useless", "Azure/azure-sdk-for-node test/services/batch/batchservice-tests.js "
        "('should fail to evaluate invalid autoscale formula', pool target 2)", "something_useless",
        situation=NEW, target=2,
        known=Known("results '$TargetDedicatedNodes=2;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue'",
                    exact_results="$TargetDedicatedNodes=2;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue")),
    PublicFormula(
        "shipyard-pending-bias-new", f"{SHIPYARD} pending_tasks, bias_last_sample, on a new pool "
        "(Azure/batch-shipyard#138)", _SHIPYARD_HEAD + _SHIPYARD_BIAS.replace("{t}", "Pending") + _SHIPYARD_TAIL,
        situation=NEW,
        known=Known("InsufficientSampleData 'Line 9, Col 43: Insufficient data from data set: $PendingTasks wanted "
                    "70%, received 0%'", error_code="InsufficientSampleData",
                    error_message="Line 9, Col 43: Insufficient data from data set: $PendingTasks wanted 70%, "
                                  "received 0%")),
    PublicFormula(
        "pool-json-2025", "a pool's JSON published on GitHub, 2025 (docs Example 2 with $ActiveTasks and "
        "cappedPoolSize = 3; repository not identified by our index)", """// Get pending tasks for the past 15 minutes.
$samples = $ActiveTasks.GetSamplePercent(TimeInterval_Minute * 15);
// If we have fewer than 70 percent data points, we use the last sample point, otherwise we use the maximum of last sample point and the history average.
$tasks = $samples < 70 ? max(0, $ActiveTasks.GetSample(1)) : 
max( $ActiveTasks.GetSample(1), avg($ActiveTasks.GetSample(TimeInterval_Minute * 15)));
// If number of pending tasks is not 0, set targetVM to pending tasks, otherwise half of current dedicated.
$targetVMs = $tasks > 0 ? $tasks : max(0, $TargetDedicatedNodes / 2);
// The pool size is capped at 20, if target VM value is more than that, set it to 20. This value should be adjusted according to your use case.
cappedPoolSize = 3;
$TargetDedicatedNodes = max(1, min($targetVMs, cappedPoolSize));
// Set node deallocation mode - keep nodes active only until tasks finish
$NodeDeallocationOption = taskcompletion;""",
        situation=RECORDED, history={"$ActiveTasks": [0.0] * 29}, newest_age=30.0, target=1,
        # 29 of 30 samples in 15 minutes: at most one sample was still in transit, a lag under 60 s.
        known=Known("autoScaleRun.results at 2025-04-24T11:34:37.971Z, a 1-node pool", max_lag_seconds=30,
                    exact_results="$TargetDedicatedNodes=1;$TargetLowPriorityNodes=0;$NodeDeallocationOption="
                                  "taskcompletion;$samples=96.6667;$targetVMs=0.5;$tasks=0;cappedPoolSize=3")),
    # ----- tools and projects that generate formulas -------------------------------------------------------
    PublicFormula("shipyard-pending-bias", f"{SHIPYARD} pending_tasks, bias_last_sample",
                  _SHIPYARD_HEAD + _SHIPYARD_BIAS.replace("{t}", "Pending") + _SHIPYARD_TAIL),
    PublicFormula("shipyard-active", f"{SHIPYARD} active_tasks", _SHIPYARD_HEAD
                  + _SHIPYARD_PLAIN.replace("{t}", "Active") + _SHIPYARD_TAIL),
    PublicFormula("shipyard-workday", f"{SHIPYARD} workday", _SHIPYARD_HEAD + _SHIPYARD_DAY
                  + "isPeakTime = isWeekday && isWorkHours;\n"
                  "$TargetDedicatedNodes = isPeakTime ? maxTargetDedicated : minTargetDedicated;\n"
                  "$TargetLowPriorityNodes = isPeakTime ? maxTargetLowPriority : minTargetLowPriority;\n"
                  "$NodeDeallocationOption = taskcompletion;"),
    PublicFormula("shipyard-weekend", f"{SHIPYARD} weekend", _SHIPYARD_HEAD + "now = time();\n"
                  "isWeekend = now.weekday == 0 || now.weekday == 6;\n"
                  "$TargetDedicatedNodes = isWeekend ? maxTargetDedicated : minTargetDedicated;\n"
                  "$TargetLowPriorityNodes = isWeekend ? maxTargetLowPriority : minTargetLowPriority;\n"
                  "$NodeDeallocationOption = taskcompletion;"),
    PublicFormula("shipyard-208-custom", "Azure/batch-shipyard#208 (a user's custom formula)", """
maxTasksPerNode = 8;
maxTargetLowPriority = 5000;
pendingTasks = max($PendingTasks.GetSample(1));
requiredNodes = pendingTasks / maxTasksPerNode;
lowPriorityNodes = (pendingTasks > 0 && requiredNodes < 1) ? 1 : requiredNodes;
lowPriorityNodes = min(maxTargetLowPriority, lowPriorityNodes);
$TargetLowPriorityNodes = min($CurrentLowPriorityNodes + 25, lowPriorityNodes);
$NodeDeallocationOption = requeue;"""),
    PublicFormula("batch-40-last-samples", "Azure/Batch#40 (a user's formula)",
                  "$maxComputeNodeLimit=1;$minCapacity = 0;$LastSampledActiveTasks =$ActiveTasks.GetSample(1);"
                  "$LastSampledRunningTasks =$RunningTasks.GetSample(1);$RunningAndWaiting = "
                  "max($LastSampledActiveTasks, 0) + max($LastSampledRunningTasks, 0);$needcompute ="
                  "$RunningAndWaiting >= 1;$nodesToAllocate =$RunningAndWaiting >$maxComputeNodeLimit ?"
                  "$maxComputeNodeLimit:$RunningAndWaiting;$TargetDedicated =$needcompute ?$nodesToAllocate:"
                  "$minCapacity;"),
    PublicFormula("doazureparallel-workday", f"{DOAZP} (WORKDAY, 1..4 nodes)",
                  "$curTime = time();$workHours = $curTime.hour >= 8 && $curTime.hour < 18;"
                  "$isWeekday = $curTime.weekday >= 1 && $curTime.weekday <= 5;"
                  "$isWorkingWeekdayHour = $workHours && $isWeekday;"
                  "$TargetDedicatedNodes = $isWorkingWeekdayHour ? 1:4;"),
    PublicFormula("doazureparallel-max-cpu", f"{DOAZP} (MAX_CPU, 4 nodes)", """$totalNodes =
  (min($CPUPercent.GetSample(TimeInterval_Minute * 10)) > 0.7) ?
  ($CurrentDedicated * 1.1) : $CurrentDedicated; $totalNodes =
  (avg($CPUPercent.GetSample(TimeInterval_Minute * 60)) < 0.2) ?
  ($CurrentDedicated * 0.9) : $totalNodes;
  $TargetDedicatedNodes = min(4, $totalNodes)""", target=2),
    PublicFormula("doazureparallel-queue", f"{DOAZP} (QUEUE, 1 task per node, 0..4 dedicated, 0..2 low-priority)",
                  "$samples = $ActiveTasks.GetSamplePercent(TimeInterval_Minute * 15);"
                  "$tasks = $samples < 70 ? max(0,$ActiveTasks.GetSample(1)) : max( $ActiveTasks.GetSample(1), "
                  "avg($ActiveTasks.GetSample(TimeInterval_Minute * 15)));"
                  "$maxTasksPerNode = 1;$round = $maxTasksPerNode - 1;"
                  "$targetVMs = $tasks > 0? (($tasks + $round)/ $maxTasksPerNode) : max(0, $TargetDedicated/2) + 0.5;"
                  "$TargetDedicatedNodes = max(0, min($targetVMs, 4));"
                  "$TargetLowPriorityNodes = max(0, min($targetVMs, 2));"
                  "$NodeDeallocationOption = taskcompletion;"),
)


# ----- running ---------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    key: str
    parsed: bool
    evaluated: bool
    results: str = ""
    error_code: str = ""
    error_message: str = ""
    correct: bool | None = None   # None: no known answer

    def describe(self) -> str:
        if not self.parsed:
            return f"syntax error: {self.error_message}"
        if self.evaluated:
            return self.results
        return f"{self.error_code}: {self.error_message}"


def judge(formula: PublicFormula, outcome: Outcome, lag: timedelta) -> Outcome:
    known = formula.known
    if known is not None and known.max_lag_seconds is not None and lag.total_seconds() > known.max_lag_seconds:
        known = None  # the recorded situation cannot arise with this lag: not a test of the engine
    if known is None or not outcome.parsed:
        outcome.correct = None if known is None else False
        return outcome
    values = dict(p.split("=", 1) for p in outcome.results.split(";") if "=" in p)
    ok = all(values.get(k) == v for k, v in known.results.items())
    ok = ok and (known.exact_results is None or outcome.results == known.exact_results)
    if known.error_code is None:
        ok = ok and (outcome.evaluated or known.exact_results is not None)
    else:
        ok = ok and outcome.error_code == known.error_code
    if known.error_message is not None:
        ok = ok and outcome.error_message == known.error_message
    outcome.correct = ok
    return outcome


def _scalars(formula: PublicFormula) -> dict[str, float]:
    target = float(formula.target)
    return {"$TargetDedicatedNodes": target, "$TargetLowPriorityNodes": 0.0, "$CurrentDedicatedNodes": target,
            "$CurrentLowPriorityNodes": 0.0, "$SampleNodeCount": target, "$TaskSlotsPerNode": 1.0,
            "$PreemptedNodeCount": 0.0, "$UsableNodeCount": target}


def run_in_process(engine: ModuleType, formula: PublicFormula, lag: timedelta = SERVICE_LAG,
                   now: datetime | None = None) -> Outcome:
    """Evaluate with ``engine`` (a copy of devstack.batch_emulator.autoscale) on the samples a formula would see:
    the history the SDK path sets, minus the samples still inside the sample lag."""
    now = now or datetime.now(timezone.utc)
    newest = now - timedelta(seconds=formula.newest_age)
    samples = {name: [(t, v) for t, v in ((newest - (len(values) - 1 - i) * SAMPLE_PERIOD, v)
                                          for i, v in enumerate(values)) if t <= now - lag]
               for name, values in formula.series().items()}
    try:
        compiled = engine.compile_formula(formula.text)
    except engine.AutoScaleError as exc:
        message = "; ".join(v for _, v in exc.values)
        return judge(formula, Outcome(formula.key, False, False, error_code=exc.code, error_message=message), lag)
    inputs = engine.AutoScaleInputs(now=now, samples=samples, scalars=_scalars(formula), sample_period=SAMPLE_PERIOD)
    try:
        result = engine.evaluate(compiled, inputs)
    except engine.AutoScaleError as exc:
        failed = Outcome(formula.key, True, False, results=exc.results or "", error_code=exc.code,
                         error_message="; ".join(v for _, v in exc.values))
        return judge(formula, failed, lag)
    return judge(formula, Outcome(formula.key, True, True, results=result.results), lag)


def run_through_sdk(client: Any, batch_url: str, formula: PublicFormula, *, pool_id: str,
                    lag: timedelta = SERVICE_LAG) -> Outcome:
    """Create an autoscale pool (its current target = ``formula.target``), set its metric history through the
    emulator's admin route and evaluate the formula with ``client.evaluate_pool_auto_scale``. The pool stays
    (the stack is throwaway; azure-batch 15 only deletes through a long-running poller)."""
    import httpx
    from azure.batch import models as m
    from azure.core.exceptions import HttpResponseError

    from devstack.batch_emulator.access import ADMIN_HEADERS

    client.create_pool(m.BatchPoolCreateOptions(
        id=pool_id, vm_size="standard_d2s_v3",
        virtual_machine_configuration=m.VirtualMachineConfiguration(
            image_reference=m.BatchVmImageReference(publisher="canonical", offer="ubuntu-24_04-lts", sku="server",
                                                    version="latest"),
            node_agent_sku_id="batch.node.ubuntu 24.04"),
        enable_auto_scale=True, auto_scale_formula=f"$TargetDedicatedNodes = {formula.target};",
        auto_scale_evaluation_interval=timedelta(minutes=15)))
    deadline = time.monotonic() + 30
    while client.get_pool(pool_id).current_dedicated_nodes != formula.target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{pool_id}: nodes did not reach {formula.target}")
        time.sleep(0.05)
    response = httpx.post(f"{batch_url}/_emulator/pools/{pool_id}/history", headers=ADMIN_HEADERS, json={
        "series": formula.series(), "periodSeconds": SAMPLE_PERIOD.total_seconds(),
        "newestAgeSeconds": formula.newest_age})
    response.raise_for_status()
    try:
        run = client.evaluate_pool_auto_scale(pool_id, m.BatchPoolEvaluateAutoScaleOptions(
            auto_scale_formula=formula.text))
    except HttpResponseError as exc:
        code = getattr(exc.error, "code", "") if exc.error else ""
        values = getattr(exc.error, "error_values", None) or []
        message = "; ".join(str(v.value) for v in values) or str(exc.message)
        parsed = code != "AutoScalingFormulaSyntaxError"
        return judge(formula, Outcome(formula.key, parsed, False, error_code=code, error_message=message), lag)
    if run.error is not None:
        message = "; ".join(str(v.value) for v in (run.error.error_values or []))
        failed = Outcome(formula.key, True, False, results=run.results or "", error_code=run.error.code or "",
                         error_message=message)
        return judge(formula, failed, lag)
    return judge(formula, Outcome(formula.key, True, True, results=run.results or ""), lag)


def totals(outcomes: list[Outcome]) -> dict[str, int]:
    return {"formulas": len(outcomes), "parsed": sum(o.parsed for o in outcomes),
            "evaluated": sum(o.evaluated for o in outcomes),
            "known": sum(o.correct is not None for o in outcomes),
            "correct": sum(bool(o.correct) for o in outcomes)}


def load_engine(commit: str, repo: Path, work: Path) -> ModuleType:
    """The formula engine (devstack/batch_emulator/autoscale) as it was at ``commit``, imported under its own name."""
    target = work / f"engine_{commit.replace('~', '_').replace('^', '_')}"
    target.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(repo), "archive", commit, "devstack/batch_emulator/autoscale"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    name = f"autoscale_engine_{abs(hash(commit))}"
    spec = importlib.util.spec_from_file_location(
        name, target / "devstack/batch_emulator/autoscale/__init__.py",
        submodule_search_locations=[str(target / "devstack/batch_emulator/autoscale")])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run_all_through_sdk(work: Path, lag: timedelta = SERVICE_LAG) -> list[Outcome]:
    """Every formula through azure-batch against a private emulator whose sample lag is ``lag``."""
    from azure.batch import BatchClient
    from azure.core.credentials import AzureNamedKeyCredential

    from devstack.compat.stack import CompatStack

    with CompatStack(work, sample_lag=lag) as stack:
        client = BatchClient(endpoint=stack.batch_url,
                             credential=AzureNamedKeyCredential(stack.batch_account, stack.batch_key))
        return [run_through_sdk(client, stack.batch_url, f, pool_id=f"formula-{i}", lag=lag)
                for i, f in enumerate(FORMULAS)]


def run_client(stack: Any) -> Any:
    """The compat matrix's `formulas` client: one step per formula on the matrix's stack; a step fails when the
    formula does not parse or contradicts a recorded answer (evaluation errors of unrecorded cases are shown)."""
    from azure.batch import BatchClient
    from azure.core.credentials import AzureNamedKeyCredential

    from .results import ClientResult, Step

    result = ClientResult("formulas", f"{len(FORMULAS)} public autoscale formulas, sources in "
                          "devstack/compat/formulas.py", "azure-batch (this venv)")
    client = BatchClient(endpoint=stack.batch_url,
                         credential=AzureNamedKeyCredential(stack.batch_account, stack.batch_key))
    lag = stack.sample_lag or SERVICE_LAG
    for i, formula in enumerate(FORMULAS):
        started = time.monotonic()
        try:
            outcome = run_through_sdk(client, stack.batch_url, formula, pool_id=f"formulas-{i}", lag=lag)
        except Exception as exc:  # one broken case is a failed step, not a crashed run
            result.steps.append(Step(formula.key, False, time.monotonic() - started, f"{type(exc).__name__}: {exc}"))
            continue
        ok = outcome.parsed and outcome.correct is not False
        result.steps.append(Step(f"{formula.key}: {_cell(outcome)}", ok, time.monotonic() - started,
                                 outcome.describe()[:300]))
    return result


def _cell(outcome: Outcome) -> str:
    mark = {None: "", True: " ✓", False: " ✗"}[outcome.correct]
    state = "evaluated" if outcome.evaluated else ("error" if outcome.parsed else "syntax error")
    return state + mark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.compat.formulas", description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="also run this commit's formula engine in process (e.g. b8d2149~1)")
    parser.add_argument("--details", action="store_true", help="print each formula's results or error")
    args = parser.parse_args(argv)
    from devstack.batch_emulator import autoscale as current
    from devstack.compat.stack import ROOT

    columns: dict[str, list[Outcome]] = {}
    short_lag = timedelta(seconds=30)
    with tempfile.TemporaryDirectory(prefix="formulas-") as scratch:
        if args.before:
            engine = load_engine(args.before, ROOT, Path(scratch))
            columns[f"before ({args.before}, in process)"] = [run_in_process(engine, f) for f in FORMULAS]
        columns["after (in process)"] = [run_in_process(current, f) for f in FORMULAS]
        for lag in (SERVICE_LAG, short_lag):
            columns[f"after (azure-batch -> emulator, lag {lag.seconds} s)"] = run_all_through_sdk(
                Path(scratch) / f"stack-{lag.seconds}", lag)
    names = list(columns)
    print("| formula | situation | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for i, formula in enumerate(FORMULAS):
        print(f"| {formula.key} | {formula.situation} | " + " | ".join(_cell(columns[n][i]) for n in names) + " |")
    print()
    print("| | formulas | parsed | evaluated | correct / known |")
    print("|---|---|---|---|---|")
    for name in names:
        t = totals(columns[name])
        print(f"| {name} | {t['formulas']} | {t['parsed']} | {t['evaluated']} | {t['correct']} / {t['known']} |")
    if args.details:
        for i, formula in enumerate(FORMULAS):
            print(f"\n{formula.key} ({formula.source})")
            for name in names:
                print(f"  {name}: {columns[name][i].describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
