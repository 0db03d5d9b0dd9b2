"""`python -m devstack.devhost` as a user runs it: settings created from the sample, logs, Ctrl-C."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from .test_blob_polling import upload
from .toyapp import wait_for

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


class Output:
    """Collects a stream's lines on a thread so the test can wait for one without blocking."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for_line(self, needle: str, timeout: float = 20.0) -> str:
        return wait_for(lambda: next((line for line in self.lines if needle in line), None), timeout)

    def join(self) -> None:
        self._thread.join(timeout=10)


def test_cli_runs_the_app_and_stops_cleanly_on_ctrl_c(make_toy_app, blob_service):
    app = make_toy_app(write_settings=False)
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.devhost", "--app-dir", str(app.dir), "--port", "0",
         "--poll-interval", "0.2", "--log-format", "json"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if k != "DEVHOST_BLOBS_EXTENSION_KEY"})  # the generated key
    stdout, stderr = Output(process.stdout), Output(process.stderr)
    try:
        stdout.wait_for_line("Dev host running")
        assert (app.dir / "local.settings.json").exists()
        stdout.wait_for_line("Created")
        stdout.wait_for_line("on_blob: blobTrigger path=" + app.input_container + "/{name}")
        stdout.wait_for_line("tick: timerTrigger schedule='0 0 0 1 1 *'")
        webhook = stdout.wait_for_line("Event Grid webhook for on_event: POST http://127.0.0.1:")
        assert webhook.endswith("/runtime/webhooks/blobs?functionName=Host.Functions.on_event"
                                "&code=<blobs_extension key>")
        key_file = app.dir.resolve() / ".devstack" / "blobs_extension.key"
        stdout.wait_for_line(f"blobs_extension key: file {key_file}")
        assert key_file.stat().st_mode & 0o777 == 0o600
        key = key_file.read_text().strip()
        assert len(key) >= 40 and not any(key in line for line in stdout.lines + stderr.lines)
        url = webhook.split("POST ", 1)[1].replace("<blobs_extension key>", key)
        handshake = [{"id": "1", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                      "data": {"validationCode": "from-cli"}}]
        headers = {"aeg-event-type": "SubscriptionValidation"}
        assert httpx.post(url.split("&code=")[0], json=handshake, headers=headers, timeout=10).status_code == 401
        assert httpx.post(url, json=handshake, headers=headers, timeout=10).json() == {"validationResponse": "from-cli"}

        upload(blob_service, app.input_container, "from-cli.bin")
        wait_for(lambda: app.calls("blob_done"), timeout=20)
        end = json.loads(stderr.wait_for_line('"event": "invocation.end"'))
        assert end["function"] == "on_blob" and end["outcome"] == "succeeded" and end["invocation_id"]
        assert end["blob"] == f"{app.input_container}/from-cli.bin"

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        stdout.join()
        assert any("Stopping" in line for line in stdout.lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cli_reports_configuration_errors_without_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "devstack.devhost", "--app-dir", str(tmp_path), "--port", "0"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "devhost:" in result.stderr and "Traceback" not in result.stderr
