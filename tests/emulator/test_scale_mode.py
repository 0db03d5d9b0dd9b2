"""Scale mode (BATCH_EMULATOR_TASK_EXECUTION=simulate): tries are timed, not run; the service around them is the same."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from azure.batch import models as m
from azure.storage.blob import BlobServiceClient

from devstack.batch_emulator.config import ConfigError, EmulatorConfig, SimulatedDuration, from_env, from_mapping

from .helpers import job_options, pool_options, shell_task, wait_for, wait_task_completed


def _identity_output(container_url: str, path: str, condition: str, headers=None) -> m.OutputFile:
    # identityReference: the emulator uploads with its storage credential (the session Azurite), no SAS needed
    return m.OutputFile(file_pattern=path.rsplit("/", 1)[-1], destination=m.OutputFileDestination(
        container=m.OutputFileBlobContainerDestination(
            container_url=container_url, path=path, upload_headers=headers,
            identity_reference=m.BatchNodeIdentityReference(resource_id="/subscriptions/x/identity"))),
        upload_options=m.OutputFileUploadConfiguration(upload_condition=condition))


def _pool_and_job(client, nodes: int = 2, slots: int = 2) -> None:
    client.create_pool(pool_options("p", target_dedicated_nodes=nodes, task_slots_per_node=slots,
                                    start_task=m.BatchStartTask(command_line="/bin/false", wait_for_success=True)))
    client.create_job(job_options("j", "p"))


def test_settings_parse_and_name_the_setting() -> None:
    cfg = from_env({"BATCH_EMULATOR_TASK_EXECUTION": "Simulate", "BATCH_EMULATOR_SIMULATED_DURATION": "lognormal:2:0.5",
                    "BATCH_EMULATOR_SIMULATED_OUTPUTS": "none", "BATCH_EMULATOR_SIMULATED_SEED": "7"})
    assert cfg.simulates and cfg.simulated_outputs == "none" and cfg.simulated_seed == 7
    assert cfg.simulated_duration == SimulatedDuration("lognormal", 2.0, 0.5)
    assert from_mapping({"simulated_duration": "0.25"}).simulated_duration == SimulatedDuration("fixed", 0.25, 0.0)
    assert not EmulatorConfig().simulates
    for name, raw in (("task_execution", "fake"), ("simulated_duration", "gamma:1:2"), ("simulated_outputs", "big"),
                      ("simulated_failure_rate", "2")):
        with pytest.raises(ConfigError, match=name):
            from_mapping({name: raw})


def test_lognormal_draws_have_the_given_median() -> None:
    import random
    rng = random.Random(1)
    draws = sorted(SimulatedDuration("lognormal", 2.0, 0.5).draw(rng) for _ in range(4001))
    assert 1.85 < draws[2000] < 2.15
    assert draws[-1] > 4 * draws[0]  # spread, not a constant


def test_simulated_tasks_complete_with_tiny_outputs_and_no_process_or_directory(batch_emulator_factory,
                                                                                storage_connection_string) -> None:
    emu = batch_emulator_factory(task_execution="simulate", simulated_duration=SimulatedDuration("fixed", 0.05, 0),
                                 simulated_outputs="tiny")
    blobs = BlobServiceClient.from_connection_string(storage_connection_string)
    out = blobs.create_container("scale-out").url
    client = emu.client()
    _pool_and_job(client)  # a start task that would fail if run: simulated, it succeeds
    headers = [m.OutputFileUploadHeader(name="x-ms-meta-source_etag", value="0xABC"),
               m.OutputFileUploadHeader(name="x-ms-blob-content-type", value="audio/mpeg")]
    # The command would fail if it ran; simulated, every try exits 0.
    client.create_tasks("j", [shell_task(f"t{i}", "exit 3", output_files=[
        _identity_output(out, f"day/t{i}.mp3", "tasksuccess", headers),
        _identity_output(out, f"logs/t{i}.log", "taskfailure")]) for i in range(12)])
    wait_for(lambda: client.get_job_task_counts("j").task_counts, lambda c: c.completed == 12, what="12 completed")
    counts = client.get_job_task_counts("j").task_counts
    assert (counts.succeeded, counts.failed, counts.active, counts.running) == (12, 0, 0, 0)
    task = client.get_task("j", "t3")
    assert task.execution_info.exit_code == 0 and task.execution_info.result == m.BatchTaskExecutionResult.SUCCESS
    assert task.node_info.pool_id == "p"
    names = sorted(b.name for b in blobs.get_container_client("scale-out").list_blobs())
    assert names == sorted(f"day/t{i}.mp3" for i in range(12))  # taskfailure outputs not written
    props = blobs.get_blob_client("scale-out", "day/t3.mp3").get_blob_properties()
    assert props.metadata == {"source_etag": "0xABC"} and props.content_settings.content_type == "audio/mpeg"
    assert props.size < 100
    assert not list((emu.data_dir / "nodes").rglob("stdout.txt"))  # no task directory, no process
    nodes = list(client.list_nodes("p"))
    assert all(n.start_task_info.result == m.BatchTaskExecutionResult.SUCCESS for n in nodes)
    assert sum(n.total_tasks_run for n in nodes) == 12


def test_slots_bound_the_simulated_tries(batch_emulator_factory) -> None:
    emu = batch_emulator_factory(task_execution="simulate", simulated_duration=SimulatedDuration("fixed", 0.6, 0),
                                 simulated_outputs="none", max_running_tasks=1)
    client = emu.client()
    _pool_and_job(client, nodes=2, slots=3)
    wait_for(lambda: list(client.list_nodes("p")), lambda ns: len(ns) == 2 and all(
        n.state == m.BatchNodeState.IDLE for n in ns), what="2 idle nodes")
    client.create_tasks("j", [shell_task(f"t{i}", "true") for i in range(10)])
    running = wait_for(lambda: client.get_job_task_counts("j").task_counts, lambda c: c.running > 0, what="running")
    # 6 slots (not max_running_tasks, which bounds processes): the rest wait active
    assert running.running <= 6
    wait_for(lambda: client.get_job_task_counts("j").task_counts.running, lambda r: r == 6, timeout=5,
             what="6 running")
    wait_for(lambda: client.get_job_task_counts("j").task_counts.completed, lambda c: c == 10, timeout=10,
             what="all complete")


def test_failures_retry_and_wall_clock_and_terminate(batch_emulator_factory) -> None:
    emu = batch_emulator_factory(task_execution="simulate", simulated_duration=SimulatedDuration("fixed", 2.0, 0),
                                 simulated_outputs="none", simulated_failure_rate=1.0)
    client = emu.client()
    _pool_and_job(client)
    client.create_task("j", shell_task("fails", "true", constraints=m.BatchTaskConstraints(
        max_task_retry_count=1, max_wall_clock_time=timedelta(seconds=30))))
    client.create_task("j", shell_task("slow", "true", constraints=m.BatchTaskConstraints(
        max_wall_clock_time=timedelta(seconds=1))))
    client.create_task("j", shell_task("stopped", "true"))
    wait_for(lambda: client.get_task("j", "stopped").state, lambda s: s == m.BatchTaskState.RUNNING, what="running")
    client.terminate_task("j", "stopped")

    failed = wait_task_completed(client, "j", "fails", timeout=15)
    assert failed.execution_info.exit_code == 1 and failed.execution_info.retry_count == 1
    assert failed.execution_info.failure_info.code == "FailureExitCode"
    slow = wait_task_completed(client, "j", "slow", timeout=15)
    assert slow.execution_info.failure_info.code == "TaskEnded"
    assert slow.execution_info.failure_info.category == "servererror"
    stopped = client.get_task("j", "stopped")
    assert stopped.execution_info.failure_info.code == "TaskEnded"
    wait_for(lambda: client.get_job_task_counts("j").task_counts.completed, lambda c: c == 3, what="3 completed")
    # the stopped task's simulated try ended later without changing its outcome
    assert client.get_task("j", "stopped").execution_info.failure_info.category == "usererror"


def test_simulated_running_tasks_are_requeued_by_a_restart(batch_emulator_factory) -> None:
    emu = batch_emulator_factory(task_execution="simulate", simulated_duration=SimulatedDuration("fixed", 1.0, 0),
                                 simulated_outputs="none")
    client = emu.client()
    _pool_and_job(client, nodes=1, slots=1)
    client.create_task("j", shell_task("t", "true"))
    wait_for(lambda: client.get_task("j", "t").state, lambda s: s == m.BatchTaskState.RUNNING, what="running")
    emu.restart()
    client = emu.client()
    task = wait_task_completed(client, "j", "t", timeout=15)
    assert task.execution_info.requeue_count == 1 and task.execution_info.result == m.BatchTaskExecutionResult.SUCCESS


def test_indexed_listing_paging_and_counts_match_the_tasks(batch_emulator_factory) -> None:
    """Lists answered from the job's indexes (creation order, change times, counters) give exactly what a scan of
    every task gives, across pages, deletes, terminations and a restart."""
    import time as _time

    from devstack.batch_emulator.timeutil import iso

    emu = batch_emulator_factory()
    client = emu.client()
    client.create_job(job_options("j", "no-pool"))  # no pool: tasks stay active unless terminated
    client.create_tasks("j", [shell_task(f"t{i:03d}", "true") for i in range(120)])
    _time.sleep(0.05)
    middle = datetime.now(timezone.utc)
    _time.sleep(0.05)
    for i in range(0, 120, 7):
        client.terminate_task("j", f"t{i:03d}")
    for i in range(3, 120, 11):
        client.delete_task("j", f"t{i:03d}")
    late = datetime.now(timezone.utc)
    _time.sleep(0.05)
    client.create_tasks("j", [shell_task(f"u{i:03d}", "true") for i in range(15)])

    def check() -> None:
        every = list(client.list_tasks("j"))  # full scan, default page
        ids = [t.id for t in every]
        assert len(ids) == len(set(ids)) == 120 - len(range(3, 120, 11)) + 15
        paged = [t.id for t in client.list_tasks("j", select=["id"], max_results=7)]
        assert paged == ids  # creation order, nothing skipped or repeated across 20 pages
        since = f"stateTransitionTime ge DateTime'{iso(middle)}'"
        changed = [t.id for t in client.list_tasks("j", filter=since, select=["id"], max_results=4)]
        assert changed == [t.id for t in every if t.state_transition_time >= middle]
        assert changed and any(i.startswith("u") for i in changed) and any(i.startswith("t") for i in changed)
        narrowed = f"{since} and state eq 'completed'"
        assert [t.id for t in client.list_tasks("j", filter=narrowed, select=["id"])] == \
            [t.id for t in every if t.state_transition_time >= middle and t.state == m.BatchTaskState.COMPLETED]
        older = f"state eq 'completed' and stateTransitionTime lt DateTime'{iso(middle)}'"
        assert list(client.list_tasks("j", filter=older)) == []
        completed = [t.id for t in client.list_tasks("j", filter="state eq 'Completed'", select=["id"], max_results=3)]
        assert completed == [t.id for t in every if t.state == m.BatchTaskState.COMPLETED] and len(completed) > 5
        window = f"stateTransitionTime ge DateTime'{iso(middle)}' and stateTransitionTime le DateTime'{iso(late)}'"
        assert [t.id for t in client.list_tasks("j", filter=window, select=["id"], max_results=2)] == \
            [t.id for t in every if middle <= t.state_transition_time <= late]
        assert list(client.list_tasks("j", filter="state eq 'running'")) == []
        counts = client.get_job_task_counts("j")
        by_state = {s: sum(1 for t in every if t.state == s) for s in m.BatchTaskState}
        assert counts.task_counts.active == by_state[m.BatchTaskState.ACTIVE]
        assert counts.task_counts.completed == by_state[m.BatchTaskState.COMPLETED] == counts.task_counts.failed
        assert counts.task_counts.succeeded == 0 and counts.task_slot_counts.active == counts.task_counts.active

    check()
    emu.restart()
    client = emu.client()
    check()


def test_listening_socket_disables_nagle() -> None:
    """Responses with a body must not wait for the client's delayed ACK (about 40 ms each, every GET)."""
    import socket

    from devstack.batch_emulator.server import _bind

    sock = _bind("127.0.0.1", 0)
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        sock.close()


def test_dev_start_passes_scale_mode_to_the_emulator() -> None:
    """`./dev start --scale-mode` (devstack/cli.py) hands stack.start these variables; they reach the emulator."""
    from devstack.batch_emulator.config import DEFAULT_ACCOUNT_KEY
    from devstack.stack import emulator_launch

    values = {"BATCH_ACCOUNT_URL": "http://127.0.0.1:10100", "BATCH_ACCOUNT_NAME": "devbatch",
              "BATCH_ACCOUNT_KEY": DEFAULT_ACCOUNT_KEY}
    args, env = emulator_launch(values, {"BATCH_EMULATOR_TASK_EXECUTION": "simulate",
                                         "BATCH_EMULATOR_SIMULATED_DURATION": "fixed:2"})
    assert "simulate" not in " ".join(args)
    config = from_env(env)
    assert config.simulates and config.simulated_duration == SimulatedDuration("fixed", 2.0, 0.0)


def test_retention_cleans_completed_tasks_across_a_restart(batch_emulator_factory) -> None:
    """Completed tasks are cleaned when their retentionTime has passed (kept in due order, not found by scanning
    every task), including tasks that completed before a restart."""
    from azure.core.exceptions import HttpResponseError

    emu = batch_emulator_factory(task_execution="simulate", simulated_duration=SimulatedDuration("fixed", 0.0, 0),
                                 simulated_outputs="none")
    client = emu.client()
    _pool_and_job(client, nodes=1, slots=4)
    short = m.BatchTaskConstraints(retention_time=timedelta(seconds=1))
    client.create_tasks("j", [shell_task(f"s{i}", "true", constraints=short) for i in range(3)] +
                        [shell_task("kept", "true")])  # the 7-day default
    wait_for(lambda: client.get_job_task_counts("j").task_counts.completed, lambda c: c == 4, what="4 completed")
    emu.restart()
    client = emu.client()

    def cleaned(task_id: str) -> bool:
        try:
            list(client.list_task_files("j", task_id))
            return False
        except HttpResponseError as exc:
            assert exc.error.code == "TaskFilesCleanedup"
            return True
    wait_for(lambda: [cleaned(f"s{i}") for i in range(3)], all, timeout=20, interval=0.5, what="cleaned")
    assert not cleaned("kept")
