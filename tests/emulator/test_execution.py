"""Tasks really run: a pool with a start task, a job, and tasks converting a generated MP4 in Azurite to MP3
(resource file by SAS URL, output file to a container SAS) - plus the failure paths reported like the service."""
from __future__ import annotations

import subprocess
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from azure.batch import models as m
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

from devstack import azurite
from devstack.ffmpeg import ffmpeg_exe

from .helpers import job_options, pool_options, shell_task, wait_for, wait_idle_nodes, wait_task_completed

pytestmark = pytest.mark.integration


@pytest.fixture
def containers(storage_connection_string, azurite_ports):
    svc = BlobServiceClient.from_connection_string(storage_connection_string)
    names = {k: f"{k}-{uuid.uuid4().hex[:8]}" for k in ("input", "output")}
    for name in names.values():
        svc.create_container(name)

    def sas_url(container: str, permission: ContainerSasPermissions) -> str:
        token = generate_container_sas(azurite.ACCOUNT_NAME, container, account_key=azurite.ACCOUNT_KEY,
                                       permission=permission, expiry=datetime.now(timezone.utc) + timedelta(hours=1))
        return f"{azurite_ports.blob_endpoint}/{container}?{token}"

    return svc, names, sas_url


def _blob_url(container_sas_url: str, blob: str) -> str:
    base, _, query = container_sas_url.partition("?")
    return f"{base}/{blob}?{query}"


def _ffmpeg_task(task_id: str, input_url: str, output_sas: str, output_path: str, **kwargs) -> m.BatchTaskCreateOptions:
    return m.BatchTaskCreateOptions(
        id=task_id,
        command_line="/bin/sh -c 'ffmpeg -nostdin -loglevel error -y -i input.mp4 -vn -sn -dn -map 0:a:0 "
                     "-codec:a libmp3lame -q:a 4 output.mp3'",
        resource_files=[m.ResourceFile(http_url=input_url, file_path="input.mp4")],
        output_files=[
            m.OutputFile(file_pattern="output.mp3",
                         destination=m.OutputFileDestination(container=m.OutputFileBlobContainerDestination(
                             container_url=output_sas, path=output_path)),
                         upload_options=m.OutputFileUploadConfiguration(
                             upload_condition=m.OutputFileUploadCondition.TASK_SUCCESS)),
            m.OutputFile(file_pattern="../std*.txt",
                         destination=m.OutputFileDestination(container=m.OutputFileBlobContainerDestination(
                             container_url=output_sas, path=f"logs/{task_id}")),
                         upload_options=m.OutputFileUploadConfiguration(
                             upload_condition=m.OutputFileUploadCondition.TASK_FAILURE)),
        ],
        **kwargs)


def test_pool_start_task_job_and_ffmpeg_tasks_convert_mp4_from_azurite(batch_emulator, containers, stereo_clip,
                                                                       tmp_path):
    svc, names, sas_url = containers
    client = batch_emulator.client()
    client.create_pool(pool_options(
        "media", target_dedicated_nodes=2, task_slots_per_node=1,
        start_task=m.BatchStartTask(
            command_line="/bin/sh -c 'ffmpeg -version > $AZ_BATCH_NODE_SHARED_DIR/ffmpeg.txt'",
            wait_for_success=True)))
    nodes = wait_idle_nodes(client, "media", 2)
    for node in nodes:
        assert node.start_task_info.result == m.BatchTaskExecutionResult.SUCCESS
        assert node.start_task_info.exit_code == 0
    assert client.get_pool("media").allocation_state == m.AllocationState.STEADY

    input_sas = sas_url(names["input"], ContainerSasPermissions(read=True))
    output_sas = sas_url(names["output"], ContainerSasPermissions(write=True, create=True))
    inputs = svc.get_container_client(names["input"])
    for i in range(2):
        inputs.upload_blob(f"folder {i}/clip.mp4", stereo_clip.read_bytes())

    client.create_job(job_options("convert", "media"))
    for i in range(2):
        client.create_task("convert", _ffmpeg_task(f"clip-{i}", _blob_url(input_sas, f"folder%20{i}/clip.mp4"),
                                                   output_sas, f"folder {i}/clip.mp3"))
    tasks = [wait_task_completed(client, "convert", f"clip-{i}") for i in range(2)]
    for task in tasks:
        info = task.execution_info
        assert info.result == m.BatchTaskExecutionResult.SUCCESS, info.failure_info
        assert info.exit_code == 0 and info.failure_info is None
        assert info.start_time <= info.end_time
        assert task.node_info.pool_id == "media" and task.node_info.node_id in {n.id for n in nodes}
        assert task.previous_state == m.BatchTaskState.RUNNING
    # spread: two tasks on two single-slot nodes ran on different nodes
    assert len({t.node_info.node_id for t in tasks}) == 2

    outputs = svc.get_container_client(names["output"])
    names_out = sorted(b.name for b in outputs.list_blobs())
    assert names_out == ["folder 0/clip.mp3", "folder 1/clip.mp3"]  # no logs: uploaded only on failure
    mp3 = tmp_path / "out.mp3"
    mp3.write_bytes(outputs.download_blob("folder 0/clip.mp3").readall())
    probe = subprocess.run([ffmpeg_exe(), "-nostdin", "-i", str(mp3), "-f", "null", "-"], capture_output=True,
                           text=True)
    assert probe.returncode == 0 and "Audio: mp3" in probe.stderr
    counts = client.get_job_task_counts("convert").task_counts
    assert (counts.completed, counts.succeeded, counts.failed) == (2, 2, 0)
    node = client.get_node("media", tasks[0].node_info.node_id)
    assert node.total_tasks_run == 1 and node.total_tasks_succeeded == 1


@pytest.fixture
def ready_pool(batch_emulator):
    client = batch_emulator.client()
    client.create_pool(pool_options("work", target_dedicated_nodes=1, task_slots_per_node=4))
    wait_idle_nodes(client, "work", 1)
    client.create_job(job_options("job", "work"))
    return client


def test_nonzero_exit_is_failure_exit_code(ready_pool):
    client = ready_pool
    client.create_task("job", shell_task("bad", "echo oops >&2; exit 3"))
    task = wait_task_completed(client, "job", "bad")
    info = task.execution_info
    assert info.result == m.BatchTaskExecutionResult.FAILURE
    assert info.exit_code == 3
    assert info.failure_info.category == m.BatchErrorSourceCategory.USER_ERROR
    assert info.failure_info.code == "FailureExitCode"
    assert info.retry_count == 0


def test_missing_input_blob_is_blob_not_found_without_exit_code(ready_pool, containers):
    client = ready_pool
    _svc, names, sas_url = containers
    url = _blob_url(sas_url(names["input"], ContainerSasPermissions(read=True)), "missing.mp4")
    client.create_task("job", _ffmpeg_task("missing", url, sas_url(names["output"], ContainerSasPermissions(
        write=True, create=True)), "missing.mp3", constraints=m.BatchTaskConstraints(max_task_retry_count=3)))
    task = wait_task_completed(client, "job", "missing")
    info = task.execution_info
    assert info.result == m.BatchTaskExecutionResult.FAILURE
    assert info.exit_code is None
    assert info.failure_info.code == "BlobNotFound"
    assert info.failure_info.category == m.BatchErrorSourceCategory.USER_ERROR
    assert info.retry_count == 0  # pre-processing errors are not retried


def test_wall_clock_limit_ends_the_task(ready_pool):
    client = ready_pool
    client.create_task("job", shell_task("slow", "sleep 30", constraints=m.BatchTaskConstraints(
        max_wall_clock_time=timedelta(seconds=1), max_task_retry_count=2)))
    task = wait_task_completed(client, "job", "slow", timeout=20)
    info = task.execution_info
    assert info.result == m.BatchTaskExecutionResult.FAILURE
    assert info.failure_info.code == "TaskEnded"
    assert info.retry_count == 0
    assert (info.end_time - info.start_time) < timedelta(seconds=10)


def test_retries_until_max_task_retry_count(ready_pool):
    client = ready_pool
    client.create_task("job", shell_task("flaky", "exit 1", constraints=m.BatchTaskConstraints(
        max_task_retry_count=2)))
    task = wait_task_completed(client, "job", "flaky")
    assert task.execution_info.retry_count == 2
    assert task.execution_info.exit_code == 1
    assert task.execution_info.last_retry_time is not None


def test_retry_then_success(ready_pool):
    client = ready_pool
    script = ('n=$(cat "$AZ_BATCH_NODE_SHARED_DIR/count" 2>/dev/null || echo 0); n=$((n+1)); '
              'echo $n > "$AZ_BATCH_NODE_SHARED_DIR/count"; [ $n -ge 2 ]')
    client.create_task("job", shell_task("second-time", script,
                                         constraints=m.BatchTaskConstraints(max_task_retry_count=3)))
    task = wait_task_completed(client, "job", "second-time")
    assert task.execution_info.result == m.BatchTaskExecutionResult.SUCCESS
    assert task.execution_info.retry_count == 1


def test_terminate_running_task_kills_it(ready_pool, batch_emulator):
    client = ready_pool
    client.create_task("job", shell_task("long", "sleep 60"))
    wait_for(lambda: client.get_task("job", "long"), lambda t: t.state == m.BatchTaskState.RUNNING,
             what="task running")
    client.terminate_task("job", "long")
    task = client.get_task("job", "long")
    assert task.state == m.BatchTaskState.COMPLETED
    assert task.execution_info.failure_info.code == "TaskEnded"
    node = wait_for(lambda: client.get_node("work", task.node_info.node_id),
                    lambda n: n.running_tasks_count == 0, what="slot released")
    assert node.state == m.BatchNodeState.IDLE


def test_failed_start_task_leaves_node_unusable_and_tasks_waiting(batch_emulator):
    client = batch_emulator.client()
    client.create_pool(pool_options("broken", target_dedicated_nodes=1,
                                    start_task=m.BatchStartTask(command_line="/bin/sh -c 'exit 7'",
                                                                wait_for_success=True)))
    node = wait_for(lambda: list(client.list_nodes("broken")),
                    lambda ns: ns and ns[0].state == m.BatchNodeState.START_TASK_FAILED, what="starttaskfailed")[0]
    assert node.start_task_info.exit_code == 7
    assert node.start_task_info.failure_info.code == "FailureExitCode"
    client.create_job(job_options("j", "broken"))
    client.create_task("j", shell_task("t", "true"))
    import time
    time.sleep(0.5)
    assert client.get_task("j", "t").state == m.BatchTaskState.ACTIVE
    counts = list(client.list_pool_node_counts(filter="poolId eq 'broken'"))[0]
    assert counts.dedicated.start_task_failed == 1 and counts.dedicated.total == 1


def test_task_slots_pack_and_required_slots(batch_emulator):
    client = batch_emulator.client()
    client.create_pool(pool_options("packed", target_dedicated_nodes=2, task_slots_per_node=2,
                                    task_scheduling_policy=m.BatchTaskSchedulingPolicy(
                                        node_fill_type=m.BatchNodeFillType.PACK)))
    wait_idle_nodes(client, "packed", 2)
    client.create_job(job_options("j", "packed"))
    client.create_task("j", shell_task("a", "sleep 1"))
    client.create_task("j", shell_task("b", "sleep 1"))
    client.create_task("j", shell_task("big", "true", required_slots=2))
    a, b, big = (wait_task_completed(client, "j", t) for t in ("a", "b", "big"))
    assert a.node_info.node_id == b.node_info.node_id  # pack fills one node first
    assert big.execution_info.result == m.BatchTaskExecutionResult.SUCCESS


def test_environment_reaches_the_task(ready_pool, batch_emulator, tmp_path):
    client = ready_pool
    client.create_task("job", shell_task(
        "env", 'test "$GREETING" = hello && test "$AZ_BATCH_TASK_ID" = env && test "$AZ_BATCH_JOB_ID" = job '
               '&& command -v ffmpeg',
        environment_settings=[m.EnvironmentSetting(name="GREETING", value="hello")]))
    task = wait_task_completed(client, "job", "env")
    assert task.execution_info.exit_code == 0, task.execution_info


def test_task_files_can_be_listed_and_downloaded(ready_pool):
    client = ready_pool
    client.create_task("job", shell_task("files", "echo oops >&2; echo out > result.txt; exit 2"))
    wait_task_completed(client, "job", "files")
    stderr = b"".join(client.download_task_file("job", "files", "stderr.txt"))
    assert b"oops" in stderr
    props = client.get_task_file_properties("job", "files", "wd/result.txt")
    assert props.content_length == 4 and props.is_directory is False
    names = {f.name for f in client.list_task_files("job", "files", recursive=True)}
    assert {"stdout.txt", "stderr.txt", "wd/result.txt"} <= names
    client.create_job(job_options("idle-job", "no-such-pool"))
    client.create_task("idle-job", shell_task("never-ran", "true"))
    with pytest.raises(Exception) as exc:
        list(client.list_task_files("idle-job", "never-ran"))
    assert exc.value.error.code == "TaskFilesUnavailable"


def test_task_dependencies_run_in_order(ready_pool):
    client = ready_pool
    client.create_job(job_options("deps", "work", uses_task_dependencies=True))
    client.create_task("deps", shell_task("second", 'test -f "$AZ_BATCH_NODE_SHARED_DIR/first-done"',
                                          depends_on=m.BatchTaskDependencies(task_ids=["first"])))
    client.create_task("deps", shell_task("first", 'sleep 0.3; touch "$AZ_BATCH_NODE_SHARED_DIR/first-done"'))
    first = wait_task_completed(client, "deps", "first")
    second = wait_task_completed(client, "deps", "second")
    assert second.execution_info.exit_code == 0
    assert second.execution_info.start_time >= first.execution_info.end_time
    with pytest.raises(Exception) as exc:  # dependencies need usesTaskDependencies on the job
        client.create_task("job", shell_task("x", "true", depends_on=m.BatchTaskDependencies(task_ids=["a"])))
    assert exc.value.error.code == "TaskDependenciesNotSpecifiedOnJob"


def test_disable_job_requeues_running_tasks_and_enable_runs_them_again(ready_pool):
    client = ready_pool
    client.create_job(job_options("pausable", "work"))
    client.create_task("pausable", shell_task("t", "sleep 0.5"))
    wait_for(lambda: client.get_task("pausable", "t"), lambda t: t.state == m.BatchTaskState.RUNNING,
             what="running")
    client.begin_disable_job("pausable", m.BatchJobDisableOptions(disable_tasks=m.DisableBatchJobOption.REQUEUE),
                             polling_interval=0).result()
    assert client.get_job("pausable").state == m.BatchJobState.DISABLED
    task = client.get_task("pausable", "t")
    assert task.state == m.BatchTaskState.ACTIVE and task.execution_info.requeue_count == 1
    import time
    time.sleep(0.3)
    assert client.get_task("pausable", "t").state == m.BatchTaskState.ACTIVE  # disabled jobs schedule nothing
    client.begin_enable_job("pausable", polling_interval=0).result()
    task = wait_task_completed(client, "pausable", "t")
    assert task.execution_info.result == m.BatchTaskExecutionResult.SUCCESS
