"""The az CLI against the local stack: `az batch` pool/job/task/autoscale commands with the emulator as account
endpoint, then `az storage blob upload` into the app's input container while the dev Functions host runs, and
the MP3 the pipeline makes, listed by `az storage blob list`.

The CLI runs with its own config directory (no login, no telemetry, nothing of the user's ~/.azure touched).
Credentials go in through AZURE_BATCH_ENDPOINT / AZURE_BATCH_ACCOUNT / AZURE_BATCH_ACCESS_KEY, and once through
the `--account-endpoint/--account-name/--account-key` flags.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .results import ClientResult, StepAborted, StepRecorder
from .stack import ROOT, CompatStack
from .venvs import VenvError, ensure_venv

AZ_CLI_PIN = "azure-cli==2.91.0"   # installed into a venv only when no `az` is available
COMMAND_TIMEOUT = 180.0


class AzFailed(RuntimeError):
    pass


def find_az(explicit: str | None, venv_cache: Path) -> str:
    """`--az`, $AZ_CLI, `az` on PATH, else azure-cli installed into a cached venv (slow the first time)."""
    for candidate in (explicit, os.environ.get("AZ_CLI"), shutil.which("az")):
        if candidate and Path(candidate).exists():
            return candidate
    python = ensure_venv(venv_cache, "azure-cli", (AZ_CLI_PIN,), timeout=1800)
    return str(python.parent / "az")


@dataclass
class Az:
    binary: str
    env: dict[str, str]
    log: Path
    secrets: tuple[str, ...] = ()   # masked in the command log (account keys, connection strings)

    def __call__(self, *args: str, output: bool = True) -> Any:
        argv = [self.binary, *args] + (["--output", "json"] if output else ["--output", "none"])
        proc = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
        with self.log.open("a") as log:
            log.write(self._mask(f"$ az {' '.join(args)}\n[exit {proc.returncode}]\n"
                                 f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}\n"))
        if proc.returncode != 0:
            errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")] or \
                proc.stderr.strip().splitlines()[-1:]
            raise AzFailed(" ".join(errors)[:400] or f"exit {proc.returncode}")
        return json.loads(proc.stdout) if output and proc.stdout.strip() else None


    def _mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


def _until(probe: Callable[[], Any], ok: Callable[[Any], bool], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    value = probe()
    while not ok(value):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout:.0f}s; last: {str(value)[:200]}")
        time.sleep(0.5)
        value = probe()
    return value


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def run_azcli(stack: CompatStack, work: Path, venv_cache: Path, az_binary: str | None, clip: Path) -> ClientResult:
    result = ClientResult("azcli", "az CLI", "?")
    started = time.monotonic()
    try:
        binary = find_az(az_binary, venv_cache)
    except VenvError as exc:
        result.setup_error = f"no az CLI: {exc}"
        return result
    config_dir = work / "azure-config"
    config_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "VIRTUAL_ENV", "PYTHON"))}
    env.update({"AZURE_CONFIG_DIR": str(config_dir), "AZURE_CORE_COLLECT_TELEMETRY": "false",
                "AZURE_CORE_ONLY_SHOW_ERRORS": "true", "AZURE_CORE_NO_COLOR": "true",
                "AZURE_BATCH_ENDPOINT": stack.batch_url, "AZURE_BATCH_ACCOUNT": stack.batch_account,
                "AZURE_BATCH_ACCESS_KEY": stack.batch_key})
    az = Az(binary, env, work / "azcli.log", secrets=(stack.batch_key, stack.connection_string))
    try:
        result.version = az("version")["azure-cli"]
    except (AzFailed, KeyError, subprocess.TimeoutExpired) as exc:
        result.setup_error = f"az version failed: {exc}"
        return result
    rec = StepRecorder(result)
    try:
        _batch_commands(az, rec, stack)
        _upload_through_dev_host(az, rec, stack, work, clip)
    except StepAborted:
        pass
    result.seconds = time.monotonic() - started
    return result


def _batch_commands(az: Az, rec: StepRecorder, stack: CompatStack) -> None:
    pool, job = "azcli-pool", "azcli-job"
    rec.step("batch pool create (image, start task, --target-dedicated-nodes)", lambda: az(
        "batch", "pool", "create", "--id", pool, "--vm-size", "Standard_D2s_v3",
        "--image", "canonical:0001-com-ubuntu-server-jammy:22_04-lts",
        "--node-agent-sku-id", "batch.node.ubuntu 22.04", "--target-dedicated-nodes", "1",
        "--start-task-command-line", "/bin/sh -c 'echo started'", "--start-task-wait-for-success",
        output=False), critical=True)

    def listed_with_flags() -> None:
        pools = az("batch", "pool", "list", "--account-endpoint", stack.batch_url,
                   "--account-name", stack.batch_account, "--account-key", stack.batch_key)
        _check(pool in [p["id"] for p in pools], f"pools {[p['id'] for p in pools]}")
    rec.step("batch pool list (--account-endpoint/-name/-key flags)", listed_with_flags)
    rec.step("batch pool show", lambda: _check(
        az("batch", "pool", "show", "--pool-id", pool)["targetDedicatedNodes"] == 1, "targetDedicatedNodes"))
    rec.step("batch node list until idle", lambda: _until(
        lambda: az("batch", "node", "list", "--pool-id", pool),
        lambda ns: len(ns) == 1 and ns[0]["state"] == "idle", 60, "an idle node"))
    rec.step("batch job create", lambda: az("batch", "job", "create", "--id", job, "--pool-id", pool, output=False),
             critical=True)
    rec.step("batch job list", lambda: _check(job in [j["id"] for j in az("batch", "job", "list")], "job listed"))
    rec.step("batch task create (--max-task-retry-count, --max-wall-clock-time)", lambda: az(
        "batch", "task", "create", "--job-id", job, "--task-id", "t1",
        "--command-line", "/bin/sh -c 'echo hello from az'", "--max-task-retry-count", "2",
        "--max-wall-clock-time", "PT10M", output=False), critical=True)

    def collection() -> None:
        tasks = [{"id": f"c{i}", "commandLine": f"/bin/sh -c 'echo {i}'"} for i in range(3)]
        path = az.log.parent / "azcli-tasks.json"
        path.write_text(json.dumps(tasks))
        az("batch", "task", "create", "--job-id", job, "--json-file", str(path), output=False)
    rec.step("batch task create --json-file (collection of 3)", collection)
    rec.step("batch task list until completed", lambda: _until(
        lambda: az("batch", "task", "list", "--job-id", job),
        lambda ts: len(ts) == 4 and all(t["state"] == "completed" for t in ts), 90, "4 completed tasks"))

    def shown() -> str:
        task = az("batch", "task", "show", "--job-id", job, "--task-id", "t1")
        _check(task["executionInfo"]["exitCode"] == 0, f"executionInfo {task['executionInfo']}")
        _check(task["constraints"]["maxTaskRetryCount"] == 2, f"constraints {task['constraints']}")
        return "exitCode 0"
    rec.step("batch task show", shown)

    def download() -> None:
        target = az.log.parent / "azcli-stdout.txt"
        az("batch", "task", "file", "download", "--job-id", job, "--task-id", "t1", "--file-path", "stdout.txt",
           "--destination", str(target), output=False)
        _check(target.read_text() == "hello from az\n", f"stdout {target.read_text()!r}")
    rec.step("batch task file download", download)

    def resize() -> None:
        az("batch", "pool", "resize", "--pool-id", pool, "--target-dedicated-nodes", "2", output=False)
        _until(lambda: az("batch", "pool", "show", "--pool-id", pool),
               lambda p: p["allocationState"] == "steady" and p["currentDedicatedNodes"] == 2, 60, "2 nodes")
    rec.step("batch pool resize", resize)
    rec.step("batch pool autoscale enable", lambda: az(
        "batch", "pool", "autoscale", "enable", "--pool-id", pool,
        "--auto-scale-formula", "$TargetDedicatedNodes = 1;", "--auto-scale-evaluation-interval", "PT5M",
        output=False))

    def evaluate() -> str:
        run = az("batch", "pool", "autoscale", "evaluate", "--pool-id", pool,
                 "--auto-scale-formula", "$x = 2 + 3; $TargetDedicatedNodes = min(1, $x);")
        _check("$x=5" in run.get("results", ""), f"autoscale run {run}")
        return run["results"]
    rec.step("batch pool autoscale evaluate", evaluate)
    rec.step("batch pool autoscale disable", lambda: az(
        "batch", "pool", "autoscale", "disable", "--pool-id", pool, output=False))
    rec.step("batch job delete", lambda: az("batch", "job", "delete", "--job-id", job, "--yes", output=False))
    rec.step("batch pool delete", lambda: az("batch", "pool", "delete", "--pool-id", pool, "--yes", output=False))


def _upload_through_dev_host(az: Az, rec: StepRecorder, stack: CompatStack, work: Path, clip: Path) -> None:
    """`az storage blob upload` into the input container while the dev host runs; the pool comes from the CLI."""
    from devstack.devhost import DevHost   # heavy (imports the app); only this client needs it

    suffix = uuid.uuid4().hex[:6]
    names = {"INPUT_CONTAINER": f"azin-{suffix}", "OUTPUT_CONTAINER": f"azout-{suffix}",
             "LOGS_CONTAINER": f"azlogs-{suffix}", "LEDGER_TABLE": f"azledger{suffix}",
             "BATCH_POOL_ID": f"azapp-pool-{suffix}", "BATCH_JOB_ID": f"azapp-job-{suffix}",
             "TIMER_SCHEDULE": "0 0 0 1 1 *"}  # no timer run: the CLI-made pool has a node already
    settings = stack.app_settings_file(work / "azcli.local.settings.json", names)
    conn = stack.connection_string
    rec.step("batch pool create (the app's pool id, 1 node)", lambda: az(
        "batch", "pool", "create", "--id", names["BATCH_POOL_ID"], "--vm-size", "Standard_D2s_v5",
        "--image", "canonical:ubuntu-24_04-lts:server", "--node-agent-sku-id", "batch.node.ubuntu 24.04",
        "--target-dedicated-nodes", "1", output=False), critical=True)
    rec.step("storage container create", lambda: az(
        "storage", "container", "create", "--name", names["INPUT_CONTAINER"], "--connection-string", conn,
        output=False), critical=True)
    host = DevHost(ROOT, settings_path=settings, port=None, poll_interval=0.5).start()
    try:
        blob = "cli upload/from az.mp4"
        rec.step("storage blob upload (while the dev host runs)", lambda: az(
            "storage", "blob", "upload", "--connection-string", conn, "--container-name", names["INPUT_CONTAINER"],
            "--file", str(clip), "--name", blob, output=False), critical=True)

        def output_blobs() -> list[dict]:
            container = names["OUTPUT_CONTAINER"]  # created by the task's first upload
            if not (az("storage", "container", "exists", "--name", container, "--connection-string", conn)
                    or {}).get("exists"):
                return []
            return az("storage", "blob", "list", "--connection-string", conn, "--container-name", container)

        def mp3_listed() -> str:
            mp3 = "cli upload/from az.mp3"
            listed = _until(output_blobs, lambda bs: any(b["name"] == mp3 for b in bs), 120, "the MP3")
            size = next(b for b in listed if b["name"] == mp3)["properties"]["contentLength"]
            _check(size > 1000, f"MP3 of {size} bytes")
            return f"{mp3} ({size} bytes)"
        rec.step("dev host converted it: MP3 in output (storage blob list)", mp3_listed)
    finally:
        host.stop(grace=5)
    rec.step("batch pool delete (app pool)", lambda: az(
        "batch", "pool", "delete", "--pool-id", names["BATCH_POOL_ID"], "--yes", output=False))

