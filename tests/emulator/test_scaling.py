"""Autoscale and resize through the SDK: formula evaluation and errors in autoScaleRun, scheduled evaluation on
pending tasks, the service's conflicts (resize vs autoscale vs resize), node removal by deallocation option."""
from __future__ import annotations

from datetime import timedelta

import pytest
from azure.batch import models as m
from azure.core.exceptions import HttpResponseError, ResourceExistsError

from .helpers import job_options, pool_options, shell_task, wait_for, wait_idle_nodes, wait_task_completed

FAST = {"autoscale_min_interval": timedelta(seconds=1), "sample_period": timedelta(seconds=0.25),
        "enable_autoscale_min_gap": timedelta(seconds=0)}


def _steady(client, pool_id: str, timeout: float = 20.0) -> m.BatchPool:
    return wait_for(lambda: client.get_pool(pool_id), lambda p: p.allocation_state == m.AllocationState.STEADY,
                    timeout=timeout, what=f"{pool_id} steady")


def test_pool_created_with_autoscale_evaluates_immediately_and_allocates(batch_emulator):
    client = batch_emulator.client()
    client.create_pool(pool_options("auto", enable_auto_scale=True,
                                    auto_scale_formula="$TargetDedicatedNodes = 2; $TargetLowPriorityNodes = 1;",
                                    auto_scale_evaluation_interval=timedelta(minutes=5)))
    pool = client.get_pool("auto")
    assert pool.enable_auto_scale is True
    assert pool.auto_scale_evaluation_interval == timedelta(minutes=5)
    run = pool.auto_scale_run
    assert run.error is None
    assert "$TargetDedicatedNodes=2" in run.results and "$TargetLowPriorityNodes=1" in run.results
    assert run.timestamp == pool.last_modified
    pool = _steady(client, "auto")
    assert (pool.target_dedicated_nodes, pool.target_low_priority_nodes) == (2, 1)
    assert (pool.current_dedicated_nodes, pool.current_low_priority_nodes) == (2, 1)
    low = [n for n in client.list_nodes("auto") if not n.is_dedicated]
    assert len(low) == 1 and low[0].id.endswith("_p")


def test_formula_syntax_errors_are_400(batch_emulator):
    client = batch_emulator.client()
    with pytest.raises(HttpResponseError) as exc:
        client.create_pool(pool_options("bad", enable_auto_scale=True, auto_scale_formula="$TargetDedicatedNodes = ;"))
    assert exc.value.status_code == 400 and exc.value.error.code == "AutoScalingFormulaSyntaxError"
    client.create_pool(pool_options("p", enable_auto_scale=True, auto_scale_formula="$TargetDedicatedNodes=0;"))
    with pytest.raises(HttpResponseError) as exc:
        client.evaluate_pool_auto_scale("p", m.BatchPoolEvaluateAutoScaleOptions(auto_scale_formula="1 +* 2"))
    assert exc.value.error.code == "AutoScalingFormulaSyntaxError"
    with pytest.raises(HttpResponseError) as exc:
        client.enable_pool_auto_scale("p", m.BatchPoolEnableAutoScaleOptions(
            auto_scale_formula="$TargetDedicatedNodes=1;", auto_scale_evaluation_interval=timedelta(minutes=1)))
    assert exc.value.status_code == 400  # below the 5-minute minimum (the default emulator setting)


def test_evaluate_reports_results_and_runtime_errors_without_resizing(batch_emulator):
    client = batch_emulator.client()
    client.create_pool(pool_options("p", enable_auto_scale=True, auto_scale_formula="$TargetDedicatedNodes=0;"))
    run = client.evaluate_pool_auto_scale("p", m.BatchPoolEvaluateAutoScaleOptions(
        auto_scale_formula="x = 3; $TargetDedicatedNodes = max(1, x * 2); $NodeDeallocationOption = taskcompletion;"))
    assert run.error is None
    assert "$TargetDedicatedNodes=6" in run.results and "$NodeDeallocationOption=taskcompletion" in run.results
    failing = client.evaluate_pool_auto_scale("p", m.BatchPoolEvaluateAutoScaleOptions(
        auto_scale_formula="$TargetDedicatedNodes = avg($PendingTasks.GetSample(10 * TimeInterval_Minute, 70));"))
    assert failing.error is not None
    assert failing.error.code == "InsufficientSampleData"
    assert failing.error.error_values and "PendingTasks" in failing.error.error_values[0].value
    pool = client.get_pool("p")
    assert pool.target_dedicated_nodes == 0 and pool.current_dedicated_nodes == 0
    assert "$TargetDedicatedNodes=0" in pool.auto_scale_run.results  # evaluate does not replace the pool's run


def test_failed_scheduled_evaluation_shows_in_autoscale_run(batch_emulator_factory):
    emu = batch_emulator_factory(**FAST)
    client = emu.client()
    client.create_pool(pool_options(
        "p", enable_auto_scale=True, auto_scale_evaluation_interval=timedelta(seconds=1),
        # An hour of samples at 100 % can never be there on a new pool: every evaluation fails.
        auto_scale_formula="$TargetDedicatedNodes = max($CPUPercent.GetSample(TimeInterval_Hour, 100));"))
    run = client.get_pool("p").auto_scale_run
    assert run.error is not None and run.error.code
    first = run.timestamp
    later = wait_for(lambda: client.get_pool("p").auto_scale_run, lambda r: r.timestamp > first, timeout=10,
                     what="next evaluation")
    assert later.error is not None
    assert client.get_pool("p").target_dedicated_nodes == 0


def test_pending_tasks_formula_scales_up_runs_work_and_scales_to_zero(batch_emulator_factory):
    # Samples show after two periods (0.5 s here), so the formula looks back 2 s and asks for 50 % of it.
    emu = batch_emulator_factory(**FAST)
    client = emu.client()
    formula = """
        samples = $PendingTasks.GetSamplePercent(2 * TimeInterval_Second);
        pending = samples < 50 ? 0 : max($PendingTasks.GetSample(2 * TimeInterval_Second, 50));
        $TargetDedicatedNodes = min(3, pending);
        $NodeDeallocationOption = taskcompletion;
    """
    client.create_pool(pool_options("scale", enable_auto_scale=True, auto_scale_formula=formula,
                                    auto_scale_evaluation_interval=timedelta(seconds=1)))
    assert client.get_pool("scale").current_dedicated_nodes == 0
    client.create_job(job_options("j", "scale"))
    client.create_tasks("j", [shell_task(f"t{i}", "sleep 1") for i in range(3)])
    wait_for(lambda: client.get_pool("scale"), lambda p: p.target_dedicated_nodes == 3, timeout=15,
             what="scale up to 3")
    for i in range(3):
        task = wait_task_completed(client, "j", f"t{i}", timeout=30)
        assert task.execution_info.result == m.BatchTaskExecutionResult.SUCCESS
    pool = wait_for(lambda: client.get_pool("scale"),
                    lambda p: p.target_dedicated_nodes == 0 and p.current_dedicated_nodes == 0, timeout=20,
                    what="scale to zero")
    assert pool.auto_scale_run.error is None
    meter = emu.meter()["pools"]["scale"]
    assert meter["dedicatedNodeSeconds"] > 0 and meter["busyNodeSeconds"] > 0
    assert meter["busyNodeSeconds"] + meter["idleNodeSeconds"] == pytest.approx(meter["dedicatedNodeSeconds"],
                                                                               abs=0.01)


def test_resize_conflicts(batch_emulator_factory):
    emu = batch_emulator_factory(node_start_delay=6.0)
    client = emu.client(retry_total=0)
    client.create_pool(pool_options("auto", enable_auto_scale=True, auto_scale_formula="$TargetDedicatedNodes=0;"))
    with pytest.raises(ResourceExistsError) as exc:
        client.begin_resize_pool("auto", m.BatchPoolResizeOptions(target_dedicated_nodes=1), polling_interval=0)
    assert exc.value.status_code == 409 and exc.value.error.code == "OperationInvalidForCurrentState"
    client.enable_pool_auto_scale("auto", m.BatchPoolEnableAutoScaleOptions(auto_scale_formula="$TargetDedicatedNodes=0;"))
    with pytest.raises(HttpResponseError) as exc:  # again within 30 s of the last enable
        client.enable_pool_auto_scale("auto", m.BatchPoolEnableAutoScaleOptions(
            auto_scale_formula="$TargetDedicatedNodes=0;"))
    assert exc.value.status_code == 503 and exc.value.error.code == "TooManyEnableAutoScaleRequests"

    client.create_pool(pool_options("manual", target_dedicated_nodes=0))
    client.begin_resize_pool("manual", m.BatchPoolResizeOptions(target_dedicated_nodes=2), polling_interval=0)
    assert client.get_pool("manual").allocation_state == m.AllocationState.RESIZING
    with pytest.raises(ResourceExistsError) as exc:
        client.begin_resize_pool("manual", m.BatchPoolResizeOptions(target_dedicated_nodes=3), polling_interval=0)
    assert exc.value.error.code == "PoolBeingResized"
    with pytest.raises(ResourceExistsError) as exc:
        client.enable_pool_auto_scale("manual", m.BatchPoolEnableAutoScaleOptions(
            auto_scale_formula="$TargetDedicatedNodes=0;", auto_scale_evaluation_interval=timedelta(minutes=5)))
    assert exc.value.error.code == "PoolBeingResized"
    with pytest.raises(ResourceExistsError) as exc:
        client.evaluate_pool_auto_scale("manual", m.BatchPoolEvaluateAutoScaleOptions(
            auto_scale_formula="$TargetDedicatedNodes=0;"))
    assert exc.value.error.code == "OperationInvalidForCurrentState"

    # stop the resize: nodes not yet allocated are dropped, the pool settles
    client.begin_stop_pool_resize("manual", polling_interval=0).result()
    pool = _steady(client, "manual")
    assert pool.allocation_state == m.AllocationState.STEADY
    assert pool.target_dedicated_nodes == pool.current_dedicated_nodes


def test_disable_autoscale_then_resize_works(batch_emulator_factory):
    emu = batch_emulator_factory(**FAST)
    client = emu.client()
    client.create_pool(pool_options("p", enable_auto_scale=True, auto_scale_formula="$TargetDedicatedNodes=1;",
                                    auto_scale_evaluation_interval=timedelta(seconds=1)))
    _steady(client, "p")
    client.disable_pool_auto_scale("p")
    pool = client.get_pool("p")
    assert pool.enable_auto_scale is False and pool.auto_scale_formula is None
    client.begin_resize_pool("p", m.BatchPoolResizeOptions(target_dedicated_nodes=2), polling_interval=0).result()
    pool = client.get_pool("p")
    assert pool.allocation_state == m.AllocationState.STEADY and pool.current_dedicated_nodes == 2


@pytest.fixture
def busy_pool(batch_emulator):
    client = batch_emulator.client()
    client.create_pool(pool_options("p", target_dedicated_nodes=1))
    wait_idle_nodes(client, "p", 1)
    client.create_job(job_options("j", "p"))
    client.create_task("j", shell_task("t", "sleep 3"))
    wait_for(lambda: client.get_task("j", "t"), lambda t: t.state == m.BatchTaskState.RUNNING, what="running")
    return client


def _shrink(client, option: m.BatchNodeDeallocationOption) -> None:
    client.begin_resize_pool("p", m.BatchPoolResizeOptions(target_dedicated_nodes=0, node_deallocation_option=option),
                             polling_interval=0)


def test_scale_down_requeue_puts_running_task_back(busy_pool):
    client = busy_pool
    _shrink(client, m.BatchNodeDeallocationOption.REQUEUE)
    task = wait_for(lambda: client.get_task("j", "t"), lambda t: t.state == m.BatchTaskState.ACTIVE,
                    what="requeued")
    assert task.execution_info.requeue_count == 1 and task.execution_info.last_requeue_time is not None
    pool = _steady(client, "p")
    assert pool.current_dedicated_nodes == 0


def test_scale_down_terminate_completes_running_task_with_failure(busy_pool):
    client = busy_pool
    _shrink(client, m.BatchNodeDeallocationOption.TERMINATE)
    task = wait_task_completed(client, "j", "t")
    assert task.execution_info.result == m.BatchTaskExecutionResult.FAILURE
    assert task.execution_info.failure_info.code == "TaskEnded"
    assert _steady(client, "p").current_dedicated_nodes == 0


@pytest.mark.parametrize("option", [m.BatchNodeDeallocationOption.TASK_COMPLETION,
                                    m.BatchNodeDeallocationOption.RETAINED_DATA])
def test_scale_down_taskcompletion_waits_for_running_work(busy_pool, option):
    client = busy_pool
    _shrink(client, option)
    wait_for(lambda: list(client.list_nodes("p")), lambda ns: ns[0].state == m.BatchNodeState.LEAVING_POOL,
             what="node leaving")
    client.create_task("j", shell_task("late", "true"))  # must not be scheduled on the leaving node
    assert client.get_pool("p").allocation_state == m.AllocationState.RESIZING
    task = wait_task_completed(client, "j", "t")
    assert task.execution_info.result == m.BatchTaskExecutionResult.SUCCESS
    assert _steady(client, "p").current_dedicated_nodes == 0
    assert client.get_task("j", "late").state == m.BatchTaskState.ACTIVE


def test_node_cap_is_reported_as_resize_error(batch_emulator_factory):
    emu = batch_emulator_factory(max_nodes_per_pool=2)
    client = emu.client()
    client.create_pool(pool_options("p", target_dedicated_nodes=3))
    pool = _steady(client, "p")
    assert pool.current_dedicated_nodes == 2
    assert pool.resize_errors and pool.resize_errors[0].code == "AccountCoreQuotaReached"


def test_node_counts_and_list_nodes_filter(batch_emulator):
    client = batch_emulator.client()
    client.create_pool(pool_options("p", target_dedicated_nodes=2))
    wait_idle_nodes(client, "p", 2)
    counts = list(client.list_pool_node_counts())
    assert counts[0].pool_id == "p" and counts[0].dedicated.idle == 2 and counts[0].dedicated.total == 2
    assert len(list(client.list_nodes("p", filter="state eq 'idle'"))) == 2
    assert list(client.list_nodes("p", filter="state eq 'running'")) == []
