"""State survives restarts: nothing lost or duplicated, running tasks requeued like after a node reboot; the
command-line entry point; the node-seconds meter."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from azure.batch import BatchClient, models as m
from azure.core.credentials import AzureNamedKeyCredential

from devstack.azurite import free_port

from .helpers import job_options, pool_options, shell_task, wait_for, wait_idle_nodes, wait_task_completed

ROOT = Path(__file__).resolve().parents[2]


def test_restart_mid_run_loses_nothing_and_requeues_running_tasks(batch_emulator):
    emu = batch_emulator
    client = emu.client()
    client.create_pool(pool_options("p", target_dedicated_nodes=1, task_slots_per_node=1,
                                    metadata=[m.BatchMetadataItem(name="k", value="v")]))
    node_id = wait_idle_nodes(client, "p", 1)[0].id
    client.create_job(job_options("j", "p"))
    client.create_task("j", shell_task("done", "exit 0"))
    done_before = wait_task_completed(client, "j", "done")
    client.create_task("j", shell_task("long", "sleep 2"))
    wait_for(lambda: client.get_task("j", "long"), lambda t: t.state == m.BatchTaskState.RUNNING, what="running")
    client.create_task("j", shell_task("queued", "true"))
    pool_etag = client.get_pool("p").etag

    emu.restart()  # same port, same data dir; running processes are killed without an outcome

    pool = client.get_pool("p")
    assert pool.etag == pool_etag and pool.metadata[0].value == "v"
    assert [n.id for n in client.list_nodes("p")] == [node_id]
    tasks = {t.id: t for t in client.list_tasks("j")}
    assert sorted(tasks) == ["done", "long", "queued"]
    done_after = tasks["done"]
    assert done_after.state == m.BatchTaskState.COMPLETED and done_after.etag == done_before.etag
    assert done_after.execution_info.exit_code == 0
    long = tasks["long"]
    assert long.execution_info.requeue_count == 1
    assert long.state in (m.BatchTaskState.ACTIVE, m.BatchTaskState.RUNNING)
    for task_id in ("long", "queued"):
        task = wait_task_completed(client, "j", task_id, timeout=30)
        assert task.execution_info.result == m.BatchTaskExecutionResult.SUCCESS
    assert wait_task_completed(client, "j", "long").execution_info.requeue_count == 1
    assert wait_task_completed(client, "j", "queued").execution_info.requeue_count == 0
    counts = client.get_job_task_counts("j").task_counts
    assert (counts.completed, counts.succeeded) == (3, 3)


def test_restart_keeps_thousand_task_collection_without_duplicates(batch_emulator):
    emu = batch_emulator
    client = emu.client()
    client.create_job(job_options("j", "none"))
    client.create_tasks("j", [shell_task(f"t{i}", "true") for i in range(1000)])
    emu.restart()
    ids = [t.id for t in client.list_tasks("j", select=["id"])]
    assert len(ids) == len(set(ids)) == 1000
    client.create_task("j", shell_task("after", "true"))  # numbering continues after the restored tasks
    assert [t.id for t in client.list_tasks("j", select=["id"])][-1] == "after"


def test_meter_counts_node_seconds_busy_and_idle(batch_emulator):
    emu = batch_emulator
    client = emu.client()
    client.create_pool(pool_options("p", target_dedicated_nodes=1))
    wait_idle_nodes(client, "p", 1)
    client.create_job(job_options("j", "p"))
    client.create_task("j", shell_task("t", "sleep 1"))
    wait_task_completed(client, "j", "t")
    time.sleep(0.3)
    meter = emu.meter()["pools"]["p"]
    assert meter["busyNodeSeconds"] >= 0.8
    assert meter["idleNodeSeconds"] > 0
    assert meter["lowPriorityNodeSeconds"] == 0
    assert meter["dedicatedNodeSeconds"] == pytest.approx(meter["busyNodeSeconds"] + meter["idleNodeSeconds"], abs=0.01)
    assert meter["currentNodes"]["dedicated"] == 1
    emu.restart()
    assert emu.meter()["pools"]["p"]["dedicatedNodeSeconds"] >= meter["dedicatedNodeSeconds"]


def test_command_line_entry_point_serves_and_stops_on_sigterm(tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BATCH_EMULATOR_NODE_START_DELAY": "0.1"}
    proc = subprocess.Popen([sys.executable, "-m", "devstack.batch_emulator", "--port", str(port),
                             "--data-dir", str(tmp_path / "state")], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 30
        while "Batch emulator ready on" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
        assert re.search(rf"Batch emulator ready on http://127\.0\.0\.1:{port}\b", line), line
        client = BatchClient(f"http://127.0.0.1:{port}", AzureNamedKeyCredential(
            "devbatch", "lF/+Qykr+DUeV17Z9j4vx0y2FbIpxzpJE+DITWrHvnvVGaPX0himNWoyc4FcE/iVOLsgxab97MK3E0FZ7UY9Gw=="))
        client.create_job(job_options("cli-job", "p"))
        assert client.get_job("cli-job").id == "cli-job"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert proc.returncode == 0
    assert (tmp_path / "state" / "state.sqlite3").exists()


def test_invalid_setting_is_reported_by_name(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BATCH_EMULATOR_FAULT_RATE": "2"}
    result = subprocess.run([sys.executable, "-m", "devstack.batch_emulator", "--in-memory"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "fault_rate" in result.stderr and "BATCH_EMULATOR_FAULT_RATE" in result.stderr
