"""The dev host's view of function_app.py agrees with the binding metadata the real Python worker sends the
Functions host (issue 16).

How the worker builds it (Azure/azure-functions-python-worker, loader.py ``get_fx_raw_bindings`` and
functions.py ``validate_function_params``): it indexes the app with ``app.get_functions()``; when one of a
function's parameters is annotated with an SDK type that a
registered extension converts (``azurefunctions.extensions.base`` ``_ConverterMeta.check_supported_type``,
e.g. ``azurefunctions.extensions.bindings.blob.BlobClient``), deferred bindings are on and the raw bindings
come from the extension base's ``get_raw_bindings(indexed_function, input_types)``, which adds
``"properties": {"SupportsDeferredBinding": true|false}`` to each binding; otherwise from the azure-functions
library's ``Function.get_raw_bindings()``. ``input_types`` maps each binding's parameter name to its
annotation. Both paths are rebuilt here from the installed, pinned libraries; nothing is hand-written JSON.

What must agree: the functions served, each trigger's type, parameter, path, connection, the blob trigger's
``source`` (the host's default when absent is LogsAndContainerScan) and ``SupportsDeferredBinding`` (true
exactly when the dev host hands the function an SDK client), the timer's schedule and flags.
"""
from __future__ import annotations

import importlib.util
import json
import re
import sys
import typing
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.devhost import DevHost
from devstack.devhost.discovery import BLOB_ARG_SDK_PREFIX, POLLING_SOURCE

pytest.importorskip("azurefunctions.extensions.base")
pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_SETTINGS = json.loads((ROOT / "local.settings.sample.json").read_text())


@dataclass(frozen=True)
class _ParamType:
    pytype: typing.Any  # what the worker's ParamTypeInfo carries for the extension base


def worker_raw_bindings(app_dir: Path) -> dict[str, list[dict]]:
    """Function name -> its bindings as the Python worker would send them (parsed JSON)."""
    from azurefunctions.extensions.base import get_binding_registry

    registry = get_binding_registry()
    spec = importlib.util.spec_from_file_location("function_app_as_the_worker_sees_it", app_dir / "function_app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from azure.functions.decorators.function_app import FunctionRegister
    (app,) = [v for v in vars(module).values() if isinstance(v, FunctionRegister)]
    raw: dict[str, list[dict]] = {}
    for function in app.get_functions():
        hints = typing.get_type_hints(function.get_user_function())
        input_types = {b.name: _ParamType(hints.get(b.name)) for b in function.get_bindings()}
        deferred = any(registry.check_supported_type(t.pytype) for t in input_types.values())
        if deferred:
            strings, _logs = registry.get_raw_bindings(function, input_types)
        else:
            strings = function.get_raw_bindings()
        raw[function.get_function_name()] = [json.loads(s) for s in strings]
    return raw


def _resolve(text: str, env: typing.Mapping[str, str]) -> str:
    return re.sub(r"%([^%]+)%", lambda m: env[m.group(1)], text)


def disagreements(raw: dict[str, list[dict]], host: DevHost, env: typing.Mapping[str, str]) -> list[str]:
    """Where the dev host's view differs from the worker's metadata (empty: they agree)."""
    problems: list[str] = []
    served = {f.name for f in host.blob_functions} | {t.name for t in host.timer_functions}
    if served != set(raw):
        problems.append(f"functions: worker {sorted(raw)}, dev host {sorted(served)}")
    for fn in host.blob_functions:
        bindings = raw.get(fn.name, [])
        if len(bindings) != 1 or bindings[0].get("type") != "blobTrigger":
            problems.append(f"{fn.name}: worker bindings {bindings}")
            continue
        b = bindings[0]
        checks = {
            "name": (b.get("name"), fn.function.trigger_param),
            "direction": (b.get("direction"), "IN"),
            "path": (_resolve(b.get("path", ""), env), fn.pattern.path),
            "connection": (b.get("connection"), fn.connection.setting),
            "source": (b.get("source") or POLLING_SOURCE, fn.source),
            "properties.SupportsDeferredBinding": (
                (b.get("properties") or {}).get("SupportsDeferredBinding"),
                (fn.function.trigger_arg_kind or "").startswith(BLOB_ARG_SDK_PREFIX)),
        }
        problems += [f"{fn.name}.{k}: worker {w!r}, dev host {h!r}" for k, (w, h) in checks.items() if w != h]
    for timer in host.timer_functions:
        bindings = raw.get(timer.name, [])
        if len(bindings) != 1 or bindings[0].get("type") != "timerTrigger":
            problems.append(f"{timer.name}: worker bindings {bindings}")
            continue
        b = bindings[0]
        checks = {
            "schedule": (_resolve(b.get("schedule", ""), env), timer.schedule.expression),
            "runOnStartup": (bool(b.get("runOnStartup")), timer.run_on_startup),
            "useMonitor": (b.get("useMonitor", True), timer.use_monitor),
            # Deferred bindings are decided per function: a timer has no SDK parameter, so no such property.
            "properties.SupportsDeferredBinding": ((b.get("properties") or {}).get("SupportsDeferredBinding"), None),
        }
        problems += [f"{timer.name}.{k}: worker {w!r}, dev host {h!r}" for k, (w, h) in checks.items() if w != h]
    return problems


@pytest.fixture
def views(tmp_path, monkeypatch, storage_connection_string):
    """(worker metadata, started dev host, settings) for the shipped function_app.py with the Event Grid source."""
    values = {**SAMPLE_SETTINGS["Values"], "AzureWebJobsStorage": storage_connection_string,
              "MEDIA_STORAGE": storage_connection_string, "BLOB_TRIGGER_SOURCE": "EventGrid"}
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    monkeypatch.setenv("BLOB_TRIGGER_SOURCE", "EventGrid")  # read by function_app.py at import, like the worker
    raw = worker_raw_bindings(ROOT)
    host = DevHost(ROOT, settings_path=settings, port=None, poll_interval=60, state_dir=tmp_path / "state").start()
    try:
        yield raw, host, values
    finally:
        host.stop(grace=0)
        sys.modules.pop("function_app_as_the_worker_sees_it", None)


def test_the_dev_host_agrees_with_the_workers_metadata_as_shipped(views):
    raw, host, values = views
    assert disagreements(raw, host, values) == []
    trigger = raw["process_upload"][0]
    # The two facts the dev host most depends on, stated outright:
    assert trigger["source"] == "EventGrid" and trigger["properties"] == {"SupportsDeferredBinding": True}
    assert "properties" not in raw["reconcile_and_scale"][0]  # no SDK parameter: the library's plain bindings


@pytest.mark.parametrize("removed", ["properties", "source"])
def test_the_check_fails_when_the_metadata_loses_supports_deferred_binding_or_source(views, removed):
    raw, host, values = views
    trigger = raw["process_upload"][0]
    del trigger[removed]
    found = disagreements(raw, host, values)
    expected = "SupportsDeferredBinding" if removed == "properties" else "source"
    assert len(found) == 1 and expected in found[0], found
