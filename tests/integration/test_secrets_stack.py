"""No secret in any log file of the local stack (issue 14): the three processes `./dev start` runs - Azurite,
the Batch emulator, the dev Functions host - launched the way devstack/stack.py launches them (same flags, each
one's output into its own log file, the emulator's secrets by environment), but on free ports in a temporary
state directory. A `./dev run`-like workload (good clips, a shell-hostile name, two audio tracks, no audio, a
corrupt file, an empty one, a text file) runs to final rows through the dev host's trigger and timer. Then no
account key, emulator key, webhook key, SAS signature, connection string or bearer token may appear in:
- any log or text file the stack wrote (its logs, the emulator's node and task files, the dev host's state);
- any ledger row (every partition);
- the operator CLI's output (`status files|failures|pool`, text and --json).
tests/integration/test_secrets.py covers the in-process path (the app's log records, task properties)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from azure.data.tables import TableClient
from azure.storage.blob import BlobServiceClient

from devstack import azurite, media, stack
from ops import commands as status_cli
from tests.integration.test_secrets import SAMPLE, leaks

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FINAL = {"succeeded", "failed", "skipped", "rejected"}


def _wait_port(proc: subprocess.Popen, port: int, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        if azurite.port_open(port):
            return
        time.sleep(0.2)
    raise TimeoutError(f"port {port} ({log.name})")


@pytest.fixture
def local_stack(tmp_path: Path):
    logs = tmp_path / "logs"
    logs.mkdir()
    ports = azurite.free_ports()
    procs: list[subprocess.Popen] = []
    azurite_proc = azurite.start(ports, location=tmp_path / "azurite", log_path=logs / "azurite.log")
    emulator_port, host_port = azurite.free_port(), azurite.free_port()
    values = {**SAMPLE, "AzureWebJobsStorage": ports.connection_string, "MEDIA_STORAGE": ports.connection_string,
              "BATCH_ACCOUNT_URL": f"http://127.0.0.1:{emulator_port}",
              "TIMER_SCHEDULE": "*/5 * * * * *", "IDLE_GRACE_SECONDS": "30"}
    settings_file = tmp_path / "local.settings.json"
    settings_file.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "BATCH_EMULATOR_NODE_START_DELAY": "0.2"}
    try:
        args, emulator_env = stack.emulator_launch(values, env, port=emulator_port, data_dir=tmp_path / "batch")
        emulator_env["BATCH_EMULATOR_STORAGE_CONNECTION_STRING"] = ports.connection_string  # this test's Azurite
        for name, cmd, port, proc_env in (
                ("batch-emulator", args, emulator_port, emulator_env),
                ("devhost", [sys.executable, "-m", "devstack.devhost", "--app-dir", str(ROOT), "--settings",
                             str(settings_file), "--port", str(host_port), "--state-dir", str(tmp_path / "state"),
                             "--poll-interval", "0.5"], host_port, env)):
            with open(logs / f"{name}.log", "ab") as out:
                procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=proc_env,
                                              start_new_session=True))
            _wait_port(procs[-1], port, logs / f"{name}.log")
        yield tmp_path, values, settings_file
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        azurite.stop(azurite_proc)


def _samples(folder: Path) -> dict[str, bytes]:
    clip = media.make_clip(folder / "clip.mp4", seconds=2.0).read_bytes()
    return {
        "hello world.mp4": clip,
        "$(touch PWNED); rm -rf ~ 'ü' `id`.mp4": clip,
        "albums/two tracks.MP4": media.make_clip(folder / "two.mp4", seconds=2.0, audio_streams=2).read_bytes(),
        "no audio.mp4": media.make_clip(folder / "silent.mp4", seconds=2.0, audio_streams=0).read_bytes(),
        "corrupt.mp4": b"not an mp4 at all" * 200,
        "empty.mp4": b"",
        "notes.txt": b"not a video\n",
    }


def test_a_local_run_leaves_no_secret_in_logs_rows_or_status(local_stack, tmp_path: Path, capsys):
    root, values, settings_file = local_stack
    blobs = BlobServiceClient.from_connection_string(values["MEDIA_STORAGE"])
    container = blobs.get_container_client(values["INPUT_CONTAINER"])
    if not container.exists():
        container.create_container()
    uploads = _samples(tmp_path)
    for name, data in uploads.items():
        container.upload_blob(name, data, overwrite=True)

    table = TableClient.from_connection_string(values["MEDIA_STORAGE"], table_name=values["LEDGER_TABLE"])
    deadline = time.monotonic() + 300
    rows: list[dict] = []
    while time.monotonic() < deadline:
        try:
            rows = [r for r in table.query_entities("PartitionKey ge ''") if r.get("InputName") in uploads]
        except Exception:  # the table appears with the first upload
            rows = []
        if len({r["InputName"] for r in rows if r.get("State") in FINAL}) == len(uploads):
            break
        time.sleep(1)
    states = {r["InputName"]: r.get("State") for r in rows}
    assert len([s for s in states.values() if s in FINAL]) == len(uploads), states
    assert {"succeeded", "failed", "rejected", "skipped"} <= set(states.values()), states

    keys = [azurite.ACCOUNT_KEY, values["BATCH_ACCOUNT_KEY"]]
    webhook_key = (root / "state" / "blobs_extension.key").read_text().strip()
    assert webhook_key
    keys.append(webhook_key)

    # every log and text file the stack wrote: its logs, the emulator's node/task files, the dev host's state
    scanned = [p for p in root.rglob("*") if p.is_file() and p.suffix in (".log", ".txt", ".jsonl")
               and p.name != "blobs_extension.key"]
    assert {"azurite.log", "batch-emulator.log", "devhost.log"} <= {p.name for p in scanned}
    assert (root / "logs" / "devhost.log").stat().st_size > 0 and (root / "logs" / "batch-emulator.log").stat().st_size > 0
    found = {str(p.relative_to(root)): leaks(p.read_text(errors="replace"), keys) for p in scanned}
    assert {p: f for p, f in found.items() if f} == {}

    every_row = list(table.query_entities("PartitionKey ge ''"))
    assert leaks(json.dumps([{k: str(v) for k, v in r.items()} for r in every_row]), keys) == []

    capsys.readouterr()
    for argv in (["files"], ["failures"], ["pool"], ["files", "--json"], ["failures", "--json"], ["pool", "--json"]):
        status_cli.main([*argv, "--settings", str(settings_file)])
        out = capsys.readouterr()
        assert out.out and leaks(out.out + out.err, keys) == [], argv


def test_the_scan_would_see_a_leak():
    # the patterns match what a leak looks like in each form it could take
    assert leaks("GET /c/b?sv=2024-08-04&sig=abcdefghijklmnop%2Bq%3D", [])
    assert leaks("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlm", [])
    assert leaks("Authorization: Bearer eyJ0eXAiOiJKV1QiLCJhbGciOi.payload", [])
    assert leaks(f"key={azurite.ACCOUNT_KEY}", [azurite.ACCOUNT_KEY])
