"""Pool and job specs: current image, autoscale from zero, slots, start task without the apt race."""
from __future__ import annotations

import hashlib
import json
import subprocess
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
    assert cmd.index("command -v ffmpeg") < cmd.index("apt_install ffmpeg")  # once per node: no-op when installed
    assert task["waitForSuccess"] is True and task["maxTaskRetryCount"] == 2
    assert task["userIdentity"]["autoUser"] == {"scope": "pool", "elevationLevel": "admin"}
    assert "resourceFiles" not in task and "environmentSettings" not in task


def test_static_ffmpeg_start_task_checks_the_pin_with_the_same_command_line():
    sha = "0123456789abcdef" * 4
    url = "https://tools.blob.core.windows.net/bin/ffmpeg-7.1?sv=x&sig=y"
    task = pool_spec.build_pool(settings(FFMPEG_BINARY_URL=url, FFMPEG_SHA256=sha)).as_dict()["startTask"]
    assert task["resourceFiles"] == [{"httpUrl": url, "filePath": "ffmpeg", "fileMode": "0755"}]
    assert task["environmentSettings"] == [{"name": "FFMPEG_SHA256", "value": sha}]
    # no setting in the command line: infra/pool.json carries it verbatim
    assert task["commandLine"] == pool_spec.START_TASK_COMMAND
    assert '| sha256sum -c -' in task["commandLine"] and '$AZ_BATCH_NODE_SHARED_DIR/bin' in task["commandLine"]


def _run_start_task(tmp_path: Path, *, azure_vm: bool, rule_present: bool = False, ffmpeg_file: bytes | None = None,
                    sha: str = "") -> tuple[subprocess.CompletedProcess, list[str], Path]:
    """The start task's own script under sh, with fake iptables/apt-get/ffmpeg on PATH and the Azure VM marker
    pointed at a temporary directory (present or not)."""
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    log = tmp_path / "calls.log"
    for tool, body in (("iptables", 'echo "iptables $*" >>"$CALLS"; case "$1" in -C) exit "$RULE_EXIT";; esac'),
                       ("ffmpeg", 'echo "ffmpeg $*" >>"$CALLS"'),
                       ("apt-get", 'echo "apt-get $*" >>"$CALLS"')):
        (fake / tool).write_text(f"#!/bin/sh\n{body}\n")
        (fake / tool).chmod(0o755)
    marker = tmp_path / "waagent"
    if azure_vm:
        marker.mkdir(exist_ok=True)
    work = tmp_path / "wd"
    work.mkdir(exist_ok=True)
    if ffmpeg_file is not None:
        (work / "ffmpeg").write_bytes(ffmpeg_file)
    script = pool_spec.START_TASK_SCRIPT.replace(pool_spec.AZURE_VM_MARKER, str(marker))
    env = {"PATH": f"{fake}:/usr/bin:/bin", "CALLS": str(log), "RULE_EXIT": "0" if rule_present else "1",
           "AZ_BATCH_NODE_SHARED_DIR": str(tmp_path / "shared"), **({"FFMPEG_SHA256": sha} if sha else {})}
    result = subprocess.run(["sh", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=30)
    return result, (log.read_text().splitlines() if log.exists() else []), tmp_path / "shared" / "bin" / "ffmpeg"


IMDS_RULE = "OUTPUT -d 169.254.169.254/32 -m owner ! --uid-owner 0 -j REJECT"


def test_start_task_closes_imds_to_everyone_but_root_on_an_azure_vm(tmp_path: Path):
    result, calls, _ = _run_start_task(tmp_path, azure_vm=True)
    assert result.returncode == 0, result.stderr
    assert calls[:2] == [f"iptables -C {IMDS_RULE}", f"iptables -I {IMDS_RULE}"]
    # the rule is in place before ffmpeg is provisioned, i.e. before any task can run
    assert calls.index(f"iptables -I {IMDS_RULE}") < calls.index("ffmpeg -version")


def test_start_task_rerun_after_a_reboot_adds_the_rule_once(tmp_path: Path):
    result, calls, _ = _run_start_task(tmp_path, azure_vm=True, rule_present=True)
    assert result.returncode == 0, result.stderr
    assert [c for c in calls if c.startswith("iptables")] == [f"iptables -C {IMDS_RULE}"]


def test_start_task_leaves_a_developer_machines_firewall_alone(tmp_path: Path):
    # the local emulator runs start tasks on the developer's machine: no Azure VM marker, no iptables call
    result, calls, _ = _run_start_task(tmp_path, azure_vm=False)
    assert result.returncode == 0, result.stderr
    assert not [c for c in calls if c.startswith("iptables")]
    assert not [c for c in calls if c.startswith("apt-get")]  # ffmpeg is already there


def test_start_task_installs_the_pinned_binary_and_refuses_a_wrong_one(tmp_path: Path):
    binary = b"#!/bin/sh\necho pinned $*\n"
    good = hashlib.sha256(binary).hexdigest()
    result, _, installed = _run_start_task(tmp_path, azure_vm=False, ffmpeg_file=binary, sha=good)
    assert result.returncode == 0, result.stderr
    assert installed.read_bytes() == binary
    installed.unlink()
    result, _, installed = _run_start_task(tmp_path, azure_vm=False, ffmpeg_file=binary, sha="0" * 64)
    assert result.returncode != 0 and not installed.exists()


def test_period_job():
    job = pool_spec.build_job(settings(BATCH_JOB_ID="jobs", BATCH_POOL_ID="pool"), "jobs-20260601-120000").as_dict()
    assert job["id"] == "jobs-20260601-120000" and job["poolInfo"] == {"poolId": "pool"}
    assert job["onAllTasksComplete"] == "noaction" and job["onTaskFailure"] == "noaction"
