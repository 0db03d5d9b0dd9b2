"""Small Functions apps written into temp dirs, so the dev host is tested without the product's app.

The toy functions append one JSON line per event to a calls file, fail on demand
(blob name contains "fail"), and block while a hold file exists (blob name contains
"hold", or any timer run), which lets tests stop the host mid-invocation.
"""
from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from devstack.devhost import DevHost
from tests import waiting

APP_TEMPLATE = '''
import json
import pathlib
import time

import azure.functions as func

app = func.FunctionApp()
CALLS = pathlib.Path({calls!r})
HOLD = pathlib.Path({hold!r})


def record(kind, **fields):
    with CALLS.open("a", encoding="utf-8") as out:
        out.write(json.dumps({{"kind": kind, **fields}}) + "\\n")


def handle_blob(fn, blob, context=None):
    try:
        blob.read(1)
        read_error = None
    except Exception as exc:
        read_error = type(exc).__name__
    record("blob", fn=fn, name=blob.name, uri=blob.uri, length=blob.length, metadata=blob.metadata,
           etag=(blob.blob_properties or {{}}).get("ETag"), read_error=read_error,
           invocation_id=context.invocation_id if context else None,
           retry_count=context.retry_context.retry_count if context else None)
    while "hold" in blob.name and HOLD.exists():
        time.sleep(0.02)
    if "fail" in blob.name:
        raise RuntimeError("asked to fail: " + blob.name)
    record("blob_done", fn=fn, name=blob.name)


@app.blob_trigger(arg_name="blob", path="%TOY_INPUT%/{{name}}", connection="TOY_STORAGE")
def on_blob(blob: func.InputStream):
    handle_blob("on_blob", blob)


@app.function_name("on_mp4")
@app.blob_trigger(arg_name="clip", path="%TOY_INPUT%/incoming/{{stem}}.mp4", connection="TOY_STORAGE")
def mp4_handler(clip: func.InputStream, context: func.Context):
    handle_blob("on_mp4", clip, context)


@app.blob_trigger(arg_name="blob", path="%TOY_EG_INPUT%/{{name}}", connection="TOY_STORAGE",
                  source=func.BlobSource.EVENT_GRID)
def on_event(blob: func.InputStream, context: func.Context):
    handle_blob("on_event", blob, context)


@app.timer_trigger(arg_name="timer", schedule="%TOY_SCHEDULE%"{timer_kwargs})
def tick(timer: func.TimerRequest):
    record("tick_start", past_due=timer.past_due, status=timer.schedule_status)
    while HOLD.exists():
        time.sleep(0.02)
    record("tick_done")
'''

HOST_JSON = {"version": "2.0", "extensions": {"queues": {"maxDequeueCount": 5}, "blobs": {"maxDegreeOfParallelism": 4}}}


@dataclass
class ToyApp:
    dir: Path
    calls_file: Path
    hold_file: Path
    input_container: str
    eventgrid_container: str
    host_id: str
    settings: dict[str, str]
    hosts: list[DevHost] = field(default_factory=list)

    def calls(self, kind: str | None = None) -> list[dict]:
        if not self.calls_file.exists():
            return []
        rows = [json.loads(line) for line in self.calls_file.read_text(encoding="utf-8").splitlines() if line]
        return [r for r in rows if kind is None or r["kind"] == kind]

    def host(self, **kwargs) -> DevHost:
        kwargs.setdefault("port", None)
        kwargs.setdefault("poll_interval", 0.2)
        kwargs.setdefault("shutdown_grace", 5.0)
        host = DevHost(self.dir, **kwargs)
        self.hosts.append(host)
        return host.start()

    def stop_all(self) -> None:
        for host in self.hosts:
            host.stop(grace=0.5)
        self.hold_file.unlink(missing_ok=True)


def write_toy_app(root: Path, connection_string: str, *, schedule: str = "0 0 0 1 1 *",
                  timer_kwargs: str = "", host_json: dict | None = None,
                  extra_settings: dict[str, str] | None = None, write_settings: bool = True,
                  app_source: str | None = None) -> ToyApp:
    """`app_source` replaces the standard toy app; it is formatted with {calls} and {hold} paths."""
    suffix = uuid.uuid4().hex[:10]
    app_dir = root / f"toy-{suffix}"
    app_dir.mkdir()
    calls, hold = app_dir / "calls.jsonl", app_dir / "hold"
    source = APP_TEMPLATE if app_source is None else app_source
    (app_dir / "function_app.py").write_text(
        source.format(calls=str(calls), hold=str(hold), timer_kwargs=timer_kwargs), encoding="utf-8")
    (app_dir / "host.json").write_text(json.dumps(host_json or HOST_JSON), encoding="utf-8")
    settings = {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "AzureWebJobsStorage": connection_string,
        "TOY_STORAGE": connection_string,
        "AzureFunctionsWebHost__hostid": f"toy-{suffix}",
        "TOY_INPUT": f"in-{suffix}",
        "TOY_EG_INPUT": f"eg-{suffix}",
        "TOY_SCHEDULE": schedule,
        **(extra_settings or {}),
    }
    document = json.dumps({"IsEncrypted": False, "Values": settings}, indent=2)
    (app_dir / ("local.settings.json" if write_settings else "local.settings.sample.json")).write_text(document)
    return ToyApp(app_dir, calls, hold, settings["TOY_INPUT"], settings["TOY_EG_INPUT"],
                  settings["AzureFunctionsWebHost__hostid"], settings)


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02):
    # The dev host reacts within milliseconds: poll faster than the shared default.
    return waiting.wait_for(predicate, timeout, interval)


def dedent(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"
