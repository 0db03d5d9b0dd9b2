"""Start the local stack (Azurite, Batch emulator, dev Functions host) in the background, and stop it.

Each component runs as its own process group; their pids and ports live in `.devstack/stack.json`
so `./dev stop` can end exactly what `./dev start` began. Logs go to `.devstack/logs/`.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from devstack import azurite
from devstack.devhost.security import WebhookKey, resolve_webhook_key

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".devstack"
STATE_FILE = STATE_DIR / "stack.json"
LOG_DIR = STATE_DIR / "logs"
SETTINGS = ROOT / "local.settings.json"
SAMPLE_SETTINGS = ROOT / "local.settings.sample.json"
DEVHOST_PORT = 7071
BLOB_TRIGGER_FUNCTION = "process_upload"


@dataclass(frozen=True)
class Component:
    name: str
    pid: int
    port: int
    log: str


def ensure_local_settings() -> dict[str, str]:
    """local.settings.json holds the user's values; created from the sample the first time."""
    if not SETTINGS.exists():
        SETTINGS.write_text(SAMPLE_SETTINGS.read_text())
        print(f"created {SETTINGS.name} from {SAMPLE_SETTINGS.name}")
    return json.loads(SETTINGS.read_text())["Values"]


def _read_state() -> list[Component]:
    if not STATE_FILE.exists():
        return []
    return [Component(**c) for c in json.loads(STATE_FILE.read_text())]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running() -> list[Component]:
    return [c for c in _read_state() if _alive(c.pid)]


def _wait_port(name: str, proc: subprocess.Popen, port: int, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{name} exited with code {proc.returncode}; last log lines:\n{tail}")
        if azurite.port_open(port):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{name} did not listen on port {port} within {timeout:.0f}s (log: {log})")


def emulator_launch(values: dict[str, str], env: dict[str, str], port: int | None = None,
                    data_dir: Path = STATE_DIR / "batch") -> tuple[list[str], dict[str, str]]:
    """The Batch emulator's command line and environment for the settings `values`. Its secrets (account key,
    storage connection string) go in its environment, readable by its user only, never on its command line,
    where `ps` shows them to every user of the machine."""
    url = urlparse(values["BATCH_ACCOUNT_URL"])
    args = [sys.executable, "-m", "devstack.batch_emulator", "--host", url.hostname or "127.0.0.1",
            "--port", str((url.port or 10100) if port is None else port), "--data-dir", str(data_dir),
            "--account-name", values["BATCH_ACCOUNT_NAME"]]
    return args, {**env, "BATCH_EMULATOR_ACCOUNT_KEY": values["BATCH_ACCOUNT_KEY"],
                  "BATCH_EMULATOR_STORAGE_CONNECTION_STRING": azurite.AzuritePorts().connection_string}


def _spawn(name: str, args: list[str], port: int, env: dict[str, str], timeout: float = 60) -> Component:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / f"{name}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                start_new_session=True)
    _wait_port(name, proc, port, log, timeout)
    return Component(name, proc.pid, port, str(log.relative_to(ROOT)))


def start(with_host: bool = True, emulator_settings: dict[str, str] | None = None) -> list[Component]:
    """Start whatever is not already running; return all components. `emulator_settings`: extra
    BATCH_EMULATOR_* variables for a newly started emulator (e.g. scale mode); the caller's environment's
    BATCH_EMULATOR_* variables reach it too."""
    values = ensure_local_settings()
    already = {c.name: c for c in running()}
    components = list(already.values())
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    if "azurite" not in already:
        ports = azurite.AzuritePorts()
        if azurite.port_open(ports.blob):
            raise RuntimeError(f"port {ports.blob} is taken by another program (another Azurite?); stop it first")
        azurite.ensure_installed()
        args = [str(azurite.AZURITE_BIN), "--silent", "--skipApiVersionCheck", "--loose",
                "--disableProductStyleUrl", "--location", str(STATE_DIR / "azurite")]
        components.append(_spawn("azurite", args, ports.table, env))

    if "batch-emulator" not in already:
        args, emulator_env = emulator_launch(values, {**env, **(emulator_settings or {})})
        port = urlparse(values["BATCH_ACCOUNT_URL"]).port or 10100
        components.append(_spawn("batch-emulator", args, port, emulator_env))

    if with_host and "devhost" not in already:
        args = [sys.executable, "-m", "devstack.devhost", "--app-dir", str(ROOT),
                "--settings", str(SETTINGS), "--port", str(DEVHOST_PORT), "--state-dir", str(STATE_DIR)]
        components.append(_spawn("devhost", args, DEVHOST_PORT, env))

    STATE_DIR.mkdir(parents=True, exist_ok=True)
    STATE_FILE.write_text(json.dumps([c.__dict__ for c in components], indent=2))
    return components


def webhook_key(values: dict[str, str]) -> WebhookKey:
    """The blobs_extension key the dev host checks: resolved as the host does (environment over settings)."""
    env = {**values, **{k: v for k, v in os.environ.items() if v}}
    return resolve_webhook_key(env, STATE_DIR)


def webhook_url(function_name: str = BLOB_TRIGGER_FUNCTION) -> str:
    """The dev host's Event Grid webhook for a function, without its key (add `&code=<key>`)."""
    return f"http://127.0.0.1:{DEVHOST_PORT}/runtime/webhooks/blobs?functionName=Host.Functions.{function_name}"


def stop(timeout: float = 15.0) -> list[str]:
    """Stop the components in reverse start order (host first, so no invocation outlives storage)."""
    stopped = []
    for c in reversed(_read_state()):
        if not _alive(c.pid):
            continue
        try:
            os.killpg(c.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + timeout
        while _alive(c.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(c.pid):
            os.killpg(c.pid, signal.SIGKILL)
        stopped.append(c.name)
    STATE_FILE.unlink(missing_ok=True)
    return stopped
