"""Pool and job specs: current image, autoscale from zero, slots, start task without the apt race."""
from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from shared import pool_spec
from shared.settings import NodePriority, Settings

SAMPLE = json.loads((Path(__file__).resolve().parents[2] / "local.settings.sample.json").read_text())["Values"]


def settings(**overrides: str) -> Settings:
    return Settings.from_env({**SAMPLE, **overrides})


def test_pool_uses_current_ubuntu_autoscale_and_pack():
    model = pool_spec.build_pool(settings(POOL_VM_SIZE="Standard_F4s_v2", POOL_TASK_SLOTS_PER_NODE=""))
    pool = model.as_dict()
    vm = pool["virtualMachineConfiguration"]
    assert vm["imageReference"] == {"publisher": "canonical", "offer": "ubuntu-24_04-lts", "sku": "server",
                                    "version": "latest"}
    assert vm["nodeAgentSKUId"] == "batch.node.ubuntu 24.04"
    assert pool["vmSize"] == "Standard_F4s_v2" and pool["taskSlotsPerNode"] == 4
    assert pool["enableAutoScale"] is True
    assert "targetDedicatedNodes" not in pool  # must not be set with autoscale
    assert model.auto_scale_evaluation_interval == timedelta(minutes=5)
    assert pool["taskSchedulingPolicy"] == {"nodeFillType": "pack"}
    assert "slotsPerNode = 4;" in pool["autoScaleFormula"]


def test_formula_from_zero_capped_with_taskcompletion():
    formula = pool_spec.autoscale_formula(2, 7, NodePriority.DEDICATED)
    statements = [s.strip() for s in formula.split(";") if s.strip()]
    assert "maxNodes = 7" in statements
    assert "$TargetDedicatedNodes = max(0, nodes)" in statements
    assert "$TargetLowPriorityNodes = 0" in statements
    assert "$NodeDeallocationOption = taskcompletion" in statements
    assert "$PendingTasks" in formula and len(formula) < 8192
    spot = pool_spec.autoscale_formula(2, 7, NodePriority.SPOT)
    assert "$TargetLowPriorityNodes = max(0, nodes)" in spot and "$TargetDedicatedNodes = 0" in spot


def test_apt_start_task_waits_for_the_lock_retries_and_skips_when_present():
    task = pool_spec.build_pool(settings()).as_dict()["startTask"]
    cmd = task["commandLine"]
    assert cmd.startswith("/bin/sh -c '") and cmd.endswith("'") and cmd.count("'") == 2
    assert "DPkg::Lock::Timeout=600" in cmd and "until " in cmd
    assert cmd.index("command -v ffmpeg") < cmd.index("apt-get")  # once per node: no-op when installed
    assert task["waitForSuccess"] is True and task["maxTaskRetryCount"] == 2
    assert task["userIdentity"]["autoUser"] == {"scope": "pool", "elevationLevel": "admin"}
    assert "resourceFiles" not in task


def test_static_ffmpeg_start_task_checks_the_pin():
    sha = "0123456789abcdef" * 4
    url = "https://tools.blob.core.windows.net/bin/ffmpeg-7.1?sv=x&sig=y"
    task = pool_spec.build_pool(settings(FFMPEG_BINARY_URL=url, FFMPEG_SHA256=sha)).as_dict()["startTask"]
    assert task["resourceFiles"] == [{"httpUrl": url, "filePath": "ffmpeg", "fileMode": "0755"}]
    cmd = task["commandLine"]
    assert cmd.count("'") == 2 and f'echo "{sha}  ffmpeg" | sha256sum -c -' in cmd
    assert "apt-get" not in cmd and '$AZ_BATCH_NODE_SHARED_DIR/bin' in cmd


def test_standing_job():
    job = pool_spec.build_job(settings(BATCH_JOB_ID="jobs", BATCH_POOL_ID="pool")).as_dict()
    assert job["id"] == "jobs" and job["poolInfo"] == {"poolId": "pool"}
    assert job["onAllTasksComplete"] == "noaction" and job["onTaskFailure"] == "noaction"
