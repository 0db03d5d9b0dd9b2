"""A private local stack for the pipeline benchmarks: Azurite, the Batch emulator and the dev Functions host.

Every component runs as its own process on free ports (never the stack's fixed 10000-10002/10100/7071,
so a user's `./dev run` and concurrent test runs are undisturbed), Azurite in memory, the emulator
in memory. The dev host is started from a settings file written here, so items can restart it with
another trigger source; each item isolates its work with its own containers, table, pool and job ids.
Component pids are exposed for CPU accounting and py-spy.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import BlobServiceClient

from devstack import azurite
from devstack.batch_emulator.access import ADMIN_HEADERS
from devstack.devhost.security import load_or_create_key_file

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_VALUES: dict[str, str] = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]


def unique(prefix: str) -> str:
    """A fresh Azure-legal name (containers, tables, pool/job ids) with a readable prefix."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if not self.alive():
            return
        os.killpg(self.popen.pid, signal.SIGTERM)  # its own session: ffmpeg children go too
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()

    def log_tail(self, chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def _wait_until(ok, timeout: float, what: str, proc: Process | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready within {timeout:.0f}s"
                               + (f"; log tail:\n{proc.log_tail()}" if proc else ""))
        time.sleep(0.05)


@dataclass
class LocalStack:
    work: Path
    slots: int                          # host-wide concurrent task processes in the emulator
    node_start_delay: float = 3.0
    ports: azurite.AzuritePorts = field(default_factory=azurite.free_ports)
    emulator_port: int = field(default_factory=azurite.free_port)
    devhost_port: int = field(default_factory=azurite.free_port)
    azurite_proc: subprocess.Popen | None = None
    emulator: Process | None = None
    devhost: Process | None = None
    _env: dict[str, str] = field(default_factory=dict)

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> "LocalStack":
        self.work.mkdir(parents=True, exist_ok=True)
        self._env = {k: v for k, v in os.environ.items() if k not in SAMPLE_VALUES and not k.startswith(
            ("BATCH_EMULATOR_", "AzureWebJobs", "MEDIA_STORAGE", "DEVHOST_"))}
        self._env["PYTHONUNBUFFERED"] = "1"
        self.azurite_proc = azurite.start(self.ports, log_path=self.work / "azurite.log")
        self.emulator = self._spawn("batch-emulator", [
            sys.executable, "-m", "devstack.batch_emulator", "--host", "127.0.0.1", "--port", str(self.emulator_port),
            "--in-memory", "--max-running-tasks", str(self.slots), "--node-start-delay", str(self.node_start_delay),
            "--log-level", "WARNING"], env={
            # secrets in the environment, not argv (`ps` shows argv to every user)
            "BATCH_EMULATOR_ACCOUNT_KEY": self.batch_account[1],
            "BATCH_EMULATOR_STORAGE_CONNECTION_STRING": self.connection_string})
        _wait_until(self._emulator_healthy, 60, "Batch emulator", self.emulator)
        return self

    def close(self) -> None:
        self.stop_devhost()
        if self.emulator is not None:
            self.emulator.stop()
        if self.azurite_proc is not None:
            azurite.stop(self.azurite_proc)

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Process:
        log = self.work / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(argv, cwd=ROOT, env={**self._env, **(env or {})}, stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        return Process(name, popen, log)

    def _emulator_healthy(self) -> bool:
        try:
            return httpx.get(f"{self.batch_url}/_emulator/health", headers=ADMIN_HEADERS,
                             timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    # --- endpoints and clients -----------------------------------------------------------------------
    @property
    def connection_string(self) -> str:
        return self.ports.connection_string

    @property
    def batch_url(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}"

    @property
    def batch_account(self) -> tuple[str, str]:
        return SAMPLE_VALUES["BATCH_ACCOUNT_NAME"], SAMPLE_VALUES["BATCH_ACCOUNT_KEY"]

    def batch_client(self) -> BatchClient:
        name, key = self.batch_account
        return BatchClient(self.batch_url, AzureNamedKeyCredential(name, key))

    def blob_service(self) -> BlobServiceClient:
        return BlobServiceClient.from_connection_string(self.connection_string)

    def emulator_admin(self, method: str, path: str) -> dict:
        response = httpx.request(method, f"{self.batch_url}/_emulator/{path}", headers=ADMIN_HEADERS, timeout=10)
        response.raise_for_status()
        return response.json()

    # --- app settings --------------------------------------------------------------------------------
    def app_settings(self, **overrides: str) -> dict[str, str]:
        """The sample settings pointed at this stack, with fresh containers/table/pool/job unless overridden."""
        name, key = self.batch_account
        values = {**SAMPLE_VALUES,
                  "AzureWebJobsStorage": self.connection_string, "MEDIA_STORAGE": self.connection_string,
                  "BATCH_ACCOUNT_URL": self.batch_url, "BATCH_ACCOUNT_NAME": name, "BATCH_ACCOUNT_KEY": key,
                  "INPUT_CONTAINER": unique("in-"), "OUTPUT_CONTAINER": unique("out-"),
                  "LOGS_CONTAINER": unique("logs-"), "LEDGER_TABLE": unique("ledger"),
                  "BATCH_POOL_ID": unique("pool-"), "BATCH_JOB_ID": unique("job-")}
        values.update(overrides)
        return values

    # --- dev host ------------------------------------------------------------------------------------
    def start_devhost(self, values: dict[str, str], *, poll_interval: float = 2.0, fallback_poll: str = "off",
                      timer_every: int | None = 5, tag: str = "devhost") -> Process:
        """Run `python -m devstack.devhost` on the app with these settings; returns once its HTTP port answers.

        `timer_every`: the app's timer function runs every so many seconds (TIMER_SCHEDULE), or never (None).
        """
        self.stop_devhost()
        values = dict(values)
        # A schedule that never fires during a run switches the timer off without touching the app.
        values["TIMER_SCHEDULE"] = f"*/{timer_every} * * * * *" if timer_every else "0 0 0 1 1 *"
        settings = self.work / f"{tag}.settings.json"
        settings.write_text(json.dumps({"IsEncrypted": False, "Values": values}, indent=1))
        self.devhost = self._spawn(tag, [
            sys.executable, "-m", "devstack.devhost", "--app-dir", str(ROOT), "--settings", str(settings),
            "--port", str(self.devhost_port), "--poll-interval", str(poll_interval),
            "--eventgrid-fallback-poll", fallback_poll, "--log-level", "WARNING", "--shutdown-grace", "5",
            "--state-dir", str(self.work)])  # its own blobs_extension key, not the user's stack's
        _wait_until(self._devhost_up, 60, "dev host", self.devhost)
        return self.devhost

    def stop_devhost(self) -> None:
        if self.devhost is not None:
            self.devhost.stop()
            self.devhost = None

    def _devhost_up(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.devhost_port}/admin/host/status", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def component_pids(self) -> dict[str, int]:
        """Name -> pid of every running component (CPU accounting, py-spy)."""
        pids = {p.name: p.pid for p in (self.emulator, self.devhost) if p is not None and p.alive()}
        if self.azurite_proc is not None and self.azurite_proc.poll() is None:
            pids["azurite"] = self.azurite_proc.pid
        return pids

    def webhook_url(self, function_name: str) -> str:
        """The dev host's Event Grid webhook, `code=<blobs_extension key>` included (the key in the work dir)."""
        return (f"http://127.0.0.1:{self.devhost_port}/runtime/webhooks/blobs"
                f"?functionName=Host.Functions.{function_name}&code={load_or_create_key_file(self.work)}")
