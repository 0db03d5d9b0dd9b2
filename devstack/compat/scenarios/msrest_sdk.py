"""Scenario for the msrest-based azure-batch SDKs (10.x - 14.x; 14.x is what older az CLI releases bundle):
the pool/job/task life cycle a Batch user goes through, run inside a venv holding only that SDK.

    COMPAT_* environment (devstack.compat.stack.CompatStack.client_env); python msrest_sdk.py
"""
from __future__ import annotations

import datetime
import sys

import azure.batch.models as bm
from azure.batch import BatchServiceClient
from azure.batch.batch_auth import SharedKeyCredentials

from _steps import ScenarioAborted, Steps, check, env, wait_until

prefix = env("COMPAT_PREFIX")
POOL, JOB = f"{prefix}-pool", f"{prefix}-job"
IMAGE = bm.ImageReference(publisher="canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts",
                          version="latest")


def main() -> int:
    steps = Steps()
    client = BatchServiceClient(SharedKeyCredentials(env("COMPAT_BATCH_ACCOUNT"), env("COMPAT_BATCH_KEY")),
                                batch_url=env("COMPAT_BATCH_URL"))
    try:
        scenario(steps, client)
    except ScenarioAborted:
        pass
    return steps.exit_code()


def scenario(steps: Steps, c: BatchServiceClient) -> None:
    admin = bm.UserIdentity(auto_user=bm.AutoUserSpecification(scope=bm.AutoUserScope.pool,
                                                                elevation_level=bm.ElevationLevel.admin))
    steps.run("pool.add (ubuntu image, start task, 2 slots)", lambda: c.pool.add(bm.PoolAddParameter(
        id=POOL, vm_size="standard_d2s_v3", target_dedicated_nodes=1, task_slots_per_node=2,
        virtual_machine_configuration=bm.VirtualMachineConfiguration(
            image_reference=IMAGE, node_agent_sku_id="batch.node.ubuntu 22.04"),
        start_task=bm.StartTask(command_line="/bin/sh -c 'echo ready > started.txt'", wait_for_success=True,
                                user_identity=admin))), critical=True)
    steps.run("pool.exists", lambda: check(c.pool.exists(POOL) is True, "pool.exists is not True"))
    steps.run("pool.list $filter", lambda: check(
        [p.id for p in c.pool.list(bm.PoolListOptions(filter=f"id eq '{POOL}'"))] == [POOL], "pool not listed"))
    steps.run("compute_node.list until idle (start task done)", lambda: wait_until(
        lambda: list(c.compute_node.list(POOL)),
        lambda ns: len(ns) == 1 and ns[0].state == bm.ComputeNodeState.idle
        and ns[0].start_task_info is not None and ns[0].start_task_info.exit_code == 0,
        60, "an idle node whose start task exited 0"))
    steps.run("job.add", lambda: c.job.add(bm.JobAddParameter(id=JOB, pool_info=bm.PoolInformation(pool_id=POOL))),
              critical=True)
    steps.run("job.get / job.list", lambda: check(
        c.job.get(JOB).pool_info.pool_id == POOL and JOB in [j.id for j in c.job.list()], "job not found"))

    steps.run("task.add (env, constraints)", lambda: c.task.add(JOB, bm.TaskAddParameter(
        id="single", command_line="/bin/sh -c 'echo $GREETING > out.txt'",
        environment_settings=[bm.EnvironmentSetting(name="GREETING", value="hello")],
        constraints=bm.TaskConstraints(max_task_retry_count=1, max_wall_clock_time=datetime.timedelta(minutes=5)))),
        critical=True)

    def add_collection() -> str:
        result = c.task.add_collection(JOB, [bm.TaskAddParameter(id=f"t{i}", command_line=f"/bin/sh -c 'echo {i}'")
                                             for i in range(5)])
        statuses = sorted({r.status.value if hasattr(r.status, "value") else r.status for r in result.value})
        check(statuses == ["success"], f"per-task statuses {statuses}")
        return f"{len(result.value)} added"
    steps.run("task.add_collection (5)", add_collection)

    def duplicate() -> str:
        try:
            c.task.add(JOB, bm.TaskAddParameter(id="SINGLE", command_line="/bin/true"))
        except bm.BatchErrorException as exc:
            check(exc.error.code == "TaskExists", f"code {exc.error.code}")
            return "TaskExists"
        raise AssertionError("a task id differing only in case was accepted")
    steps.run("task.add duplicate id -> TaskExists", duplicate)
    steps.run("task.add failing task (exit 3)", lambda: c.task.add(JOB, bm.TaskAddParameter(
        id="fails", command_line="/bin/sh -c 'exit 3'")))

    steps.run("task.list until all completed", lambda: wait_until(
        lambda: list(c.task.list(JOB)), lambda ts: len(ts) == 7 and all(t.state == bm.TaskState.completed for t in ts),
        90, "7 completed tasks"))

    def paged_filtered() -> str:
        options = bm.TaskListOptions(filter="state eq 'completed' and executionInfo/exitCode eq 0",
                                     select="id,state,executionInfo", max_results=2)
        ids = sorted(t.id for t in c.task.list(JOB, task_list_options=options))
        check(ids == ["single", "t0", "t1", "t2", "t3", "t4"], f"ids {ids}")
        return "6 over pages of 2"
    steps.run("task.list $filter/$select/maxresults paging", paged_filtered)

    def single_result() -> None:
        info = c.task.get(JOB, "single").execution_info
        check(info.exit_code == 0 and info.result == bm.TaskExecutionResult.success, f"single: {info}")
    steps.run("task.get success", single_result)

    def failed_result() -> None:
        info = c.task.get(JOB, "fails").execution_info
        check(info.exit_code == 3 and info.result == bm.TaskExecutionResult.failure, f"fails: {info}")
        check(info.failure_info.category == bm.ErrorCategory.user_error, f"category {info.failure_info.category}")
    steps.run("task.get failure (exit code, failureInfo)", failed_result)

    def counts() -> str:
        result = c.job.get_task_counts(JOB)
        tc = getattr(result, "task_counts", result)
        check((tc.completed, tc.succeeded, tc.failed) == (7, 6, 1), f"counts {tc}")
        return f"completed={tc.completed} failed={tc.failed}"
    steps.run("job.get_task_counts", counts)

    def files() -> str:
        # The working directory is <task dir>/wd; file names are relative to the task directory.
        names = [f.name for f in c.file.list_from_task(JOB, "single", recursive=True)]
        check("wd/out.txt" in names, f"files {names}")
        content = b"".join(c.file.get_from_task(JOB, "single", "wd/out.txt"))
        check(content == b"hello\n", f"content {content!r}")
        return "wd/out.txt"
    steps.run("file.list_from_task / get_from_task (nested path)", files)

    def resize() -> None:
        c.pool.resize(POOL, bm.PoolResizeParameter(target_dedicated_nodes=2))
        wait_until(lambda: c.pool.get(POOL), lambda p: p.allocation_state == bm.AllocationState.steady
                   and p.current_dedicated_nodes == 2, 60, "2 dedicated nodes")
    steps.run("pool.resize to 2", resize)

    formula = "$TargetDedicatedNodes = 1; $NodeDeallocationOption = taskcompletion;"
    steps.run("pool.enable_auto_scale", lambda: c.pool.enable_auto_scale(
        POOL, auto_scale_formula=formula, auto_scale_evaluation_interval=datetime.timedelta(minutes=5)))

    def evaluate() -> str:
        run = c.pool.evaluate_auto_scale(POOL, "$x = 2 + 3; $TargetDedicatedNodes = min(1, $x);")
        check(run.error is None and "$x=5" in run.results, f"autoscale run {run.results!r} {run.error}")
        return run.results
    steps.run("pool.evaluate_auto_scale", evaluate)

    def refused_resize() -> str:
        try:
            c.pool.resize(POOL, bm.PoolResizeParameter(target_dedicated_nodes=3))
        except bm.BatchErrorException as exc:
            check(exc.response.status_code == 409, f"status {exc.response.status_code}")
            return exc.error.code
        raise AssertionError("resize of an autoscale pool was accepted")
    steps.run("pool.resize while autoscale -> 409", refused_resize)
    steps.run("pool.disable_auto_scale", lambda: c.pool.disable_auto_scale(POOL))

    steps.run("job.delete", lambda: c.job.delete(JOB))
    steps.run("pool.delete", lambda: c.pool.delete(POOL))
    steps.run("pool gone", lambda: wait_until(lambda: c.pool.exists(POOL), lambda e: e is False, 60, "pool deleted"))


if __name__ == "__main__":
    sys.exit(main())
