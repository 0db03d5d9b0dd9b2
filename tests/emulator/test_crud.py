"""Pools, jobs and tasks CRUD through the real azure-batch 15.1.0 SDK: shapes, defaults, errors."""
from __future__ import annotations

import pytest
from azure.batch import models as m
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from azure.batch.models._models import BatchJobTerminateOptions

from .helpers import job_options, pool_options, shell_task

UNLIMITED = "P10675199DT2H48M5.4775807S"


@pytest.fixture
def client(batch_emulator):
    return batch_emulator.client()


def test_pool_create_get_exists_list_and_echoes_properties(client):
    client.create_pool(pool_options(
        "Pool-A", target_dedicated_nodes=0, task_slots_per_node=4,
        task_scheduling_policy=m.BatchTaskSchedulingPolicy(node_fill_type=m.BatchNodeFillType.PACK),
        start_task=m.BatchStartTask(command_line="/bin/true"),
        metadata=[m.BatchMetadataItem(name="owner", value="tests")]))
    pool = client.get_pool("pool-a")  # ids are case-insensitive, case-preserving
    assert pool.id == "Pool-A"
    assert pool.state == m.BatchPoolState.ACTIVE
    assert pool.allocation_state == m.AllocationState.STEADY
    assert pool.vm_size == "standard_d2s_v3"
    assert pool.task_slots_per_node == 4
    assert pool.task_scheduling_policy.node_fill_type == m.BatchNodeFillType.PACK
    assert pool.start_task.command_line == "/bin/true"
    assert pool.start_task.wait_for_success is True  # service default echoed
    assert pool.metadata[0].name == "owner"
    assert pool.etag.startswith("0x") and pool.last_modified and pool.creation_time
    assert pool.current_dedicated_nodes == 0 and pool.enable_auto_scale is False
    assert pool.url.endswith("/pools/Pool-A")
    assert client.pool_exists("POOL-A") is True
    assert [p.id for p in client.list_pools()] == ["Pool-A"]


def test_pool_errors_use_service_codes(client):
    client.create_pool(pool_options("p"))
    with pytest.raises(ResourceExistsError) as exc:
        client.create_pool(pool_options("P"))
    assert exc.value.error.code == "PoolExists"
    with pytest.raises(ResourceNotFoundError) as exc:
        client.get_pool("missing")
    assert exc.value.error.code == "PoolNotFound"
    assert "The specified pool does not exist." in exc.value.error.message
    # 15.1.0 raises on 404 for HEAD too (BatchExceptionPolicy runs before the op's [200, 404] check)
    with pytest.raises(ResourceNotFoundError):
        client.pool_exists("missing")
    with pytest.raises(HttpResponseError) as exc:
        client.create_pool(m.BatchPoolCreateOptions(id="novm", vm_size="x"))
    assert exc.value.status_code == 400 and exc.value.error.code == "MissingRequiredProperty"


def test_pool_patch_and_delete(client):
    client.create_pool(pool_options("p"))
    before = client.get_pool("p")
    client.update_pool("p", m.BatchPoolUpdateOptions(metadata=[m.BatchMetadataItem(name="k", value="v")]))
    after = client.get_pool("p")
    assert after.metadata[0].value == "v"
    assert after.etag != before.etag
    client.begin_delete_pool("p", polling_interval=0).result()
    with pytest.raises(ResourceNotFoundError):
        client.get_pool("p")


def test_job_create_defaults_get_list_update_delete(client):
    client.create_job(job_options("Job-1", "nopool-yet", priority=5,
                                  constraints=m.BatchJobConstraints(max_task_retry_count=2)))
    job = client.get_job("job-1")
    assert job.id == "Job-1" and job.state == m.BatchJobState.ACTIVE
    assert job.pool_info.pool_id == "nopool-yet"
    assert job.priority == 5
    assert job.constraints.max_task_retry_count == 2
    assert job.all_tasks_complete_mode == m.BatchAllTasksCompleteMode.NO_ACTION
    assert job.execution_info.pool_id == "nopool-yet" and job.execution_info.start_time
    with pytest.raises(ResourceExistsError) as exc:
        client.create_job(job_options("JOB-1", "x"))
    assert exc.value.error.code == "JobExists"
    client.update_job("Job-1", m.BatchJobUpdateOptions(priority=7))
    assert client.get_job("Job-1").priority == 7
    assert [j.id for j in client.list_jobs()] == ["Job-1"]
    client.begin_delete_job("Job-1", polling_interval=0).result()
    with pytest.raises(ResourceNotFoundError) as exc:
        client.get_job("Job-1")
    assert exc.value.error.code == "JobNotFound"


def test_task_create_get_defaults_and_errors(client):
    client.create_job(job_options("j", "p", constraints=m.BatchJobConstraints(max_task_retry_count=3)))
    client.create_task("j", shell_task("Task_1", "echo hi", display_name="first"))
    task = client.get_task("j", "task_1")
    assert task.id == "Task_1" and task.display_name == "first"
    assert task.state == m.BatchTaskState.ACTIVE
    assert task.url.endswith("/jobs/j/tasks/Task_1")
    # service defaults echoed (SPEC Tasks_ListTasks example); retry count inherited from the job
    assert task.constraints.max_task_retry_count == 3
    assert task.constraints.retention_time is not None
    assert task.required_slots == 1
    assert task.execution_info.retry_count == 0 and task.execution_info.requeue_count == 0
    assert task.execution_info.start_time is None and task.execution_info.exit_code is None
    assert task.state_transition_time == task.creation_time

    with pytest.raises(ResourceExistsError) as exc:
        client.create_task("j", shell_task("TASK_1", "echo again"))
    assert exc.value.error.code == "TaskExists"
    with pytest.raises(ResourceNotFoundError) as exc:
        client.create_task("nojob", shell_task("t", "true"))
    assert exc.value.error.code == "JobNotFound"
    with pytest.raises(ResourceNotFoundError) as exc:
        client.get_task("j", "nope")
    assert exc.value.error.code == "TaskNotFound"


@pytest.mark.parametrize("bad_id, reason", [
    ("a" * 65, "at most 64"),
    ("has space", "alphanumeric"),
    ("dot.ted", "alphanumeric"),
    ("ünï", "alphanumeric"),
])
def test_task_id_rules(client, bad_id, reason):
    client.create_job(job_options("j", "p"))
    with pytest.raises(HttpResponseError) as exc:
        client.create_task("j", shell_task(bad_id, "true"))
    assert exc.value.status_code == 400
    assert exc.value.error.code == "InvalidPropertyValue"
    details = {d.code: d.message for d in exc.value.error.details}
    assert details["PropertyName"] == "id"
    assert reason in details["Reason"]


def test_task_id_of_64_chars_with_dash_and_underscore_is_valid(client):
    client.create_job(job_options("j", "p"))
    task_id = ("a-b_" * 16)[:64]
    client.create_task("j", shell_task(task_id, "true"))
    assert client.get_task("j", task_id.upper()).id == task_id


def test_terminate_active_task_and_terminate_twice(client):
    client.create_job(job_options("j", "nopool"))
    client.create_task("j", shell_task("t", "sleep 5"))
    client.terminate_task("j", "t")
    task = client.get_task("j", "t")
    assert task.state == m.BatchTaskState.COMPLETED
    assert task.previous_state == m.BatchTaskState.ACTIVE
    assert task.execution_info.result == m.BatchTaskExecutionResult.FAILURE
    assert task.execution_info.failure_info.code == "TaskEnded"
    assert task.execution_info.exit_code is None
    with pytest.raises(ResourceExistsError) as exc:
        client.terminate_task("j", "t")
    assert exc.value.error.code == "TaskCompleted"
    client.delete_task("j", "t")
    with pytest.raises(ResourceNotFoundError):
        client.get_task("j", "t")


def test_task_counts_and_terminated_job_rejects_tasks(client):
    client.create_job(job_options("j", "nopool"))
    for i in range(3):
        client.create_task("j", shell_task(f"t{i}", "true", required_slots=2))
    client.terminate_task("j", "t0")
    counts = client.get_job_task_counts("j")
    assert (counts.task_counts.active, counts.task_counts.completed, counts.task_counts.failed) == (2, 1, 1)
    assert counts.task_slot_counts.active == 4
    # 15.1.0 cannot send terminate without a body (content_type None); a reason is always passed.
    client.begin_terminate_job("j", options=BatchJobTerminateOptions(termination_reason="done"),
                               polling_interval=0).result()
    job = client.get_job("j")
    assert job.state == m.BatchJobState.COMPLETED
    assert job.execution_info.termination_reason == "done"
    with pytest.raises(ResourceExistsError) as exc:
        client.create_task("j", shell_task("late", "true"))
    assert exc.value.error.code == "JobCompleted"


def test_job_on_all_tasks_complete_terminates_job(client):
    client.create_job(job_options("j", "nopool", all_tasks_complete_mode=m.BatchAllTasksCompleteMode.TERMINATE_JOB))
    client.create_task("j", shell_task("t", "true"))
    client.terminate_task("j", "t")
    job = client.get_job("j")
    assert job.state == m.BatchJobState.COMPLETED
    assert job.execution_info.termination_reason == "AllTasksComplete"


def test_unsupported_features_answer_501_not_silence(client):
    with pytest.raises(HttpResponseError) as exc:
        client.create_job(m.BatchJobCreateOptions(
            id="jm", pool_info=m.BatchPoolInfo(pool_id="p"),
            job_manager_task=m.BatchJobManagerTask(id="mgr", command_line="true")))
    assert exc.value.status_code == 501 and exc.value.error.code == "NotImplemented"


def test_job_max_wall_clock_time_terminates_the_job(client):
    from datetime import timedelta

    from .helpers import wait_for
    client.create_job(job_options("j", "nopool", constraints=m.BatchJobConstraints(
        max_wall_clock_time=timedelta(seconds=1))))
    client.create_task("j", shell_task("t", "true"))
    job = wait_for(lambda: client.get_job("j"), lambda j: j.state == m.BatchJobState.COMPLETED, timeout=10,
                   what="job expiry")
    assert job.execution_info.termination_reason == "MaxWallClockTimeExpiry"
    assert client.get_task("j", "t").state == m.BatchTaskState.ACTIVE  # never-run tasks stay as they were
