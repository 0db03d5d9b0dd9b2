"""Pure pieces of the dev host: patterns, settings, connections, host id, host.json, events, discovery."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from devstack.devhost.blobpath import BlobPathPattern
from devstack.devhost.connections import resolve_connection
from devstack.devhost.discovery import discover
from devstack.devhost.errors import DevHostError
from devstack.devhost.events import (MalformedDelivery, blob_created, blob_created_event, parse_delivery,
                                     validation_code)
from devstack.devhost.host import derive_host_id
from devstack.devhost.hostconfig import load_host_options
from devstack.devhost.poison import blob_trigger_message
from devstack.devhost.settings import EnvironmentOverlay, load_local_settings, resolve_app_setting_expressions

from .toyapp import dedent

AZURITE = "UseDevelopmentStorage=true"


# -- blob path patterns ----------------------------------------------------------------------
@pytest.mark.parametrize("path, name, expected", [
    ("input/{name}", "a.mp4", {"name": "a.mp4"}),
    ("input/{name}", "deep/folder/a b.mp4", {"name": "deep/folder/a b.mp4"}),
    ("input/original-{name}", "original-x.png", {"name": "x.png"}),
    ("input/original-{name}", "copy-x.png", None),
    ("input/{name}.mp4", "clip.mp4", {"name": "clip"}),
    ("input/{name}.mp4", "clip.mp3", None),
    ("input/{blobname}.{ext}", "a.b.c", {"blobname": "a.b", "ext": "c"}),   # greedy, like BindingTemplate
    ("input/{{literal}}-{name}", "{literal}-z", {"name": "z"}),
    ("input", "anything/at/all", {}),
])
def test_blob_path_pattern_matching(path, name, expected):
    assert BlobPathPattern(path).match(name) == expected


def test_blob_path_pattern_container_and_list_prefix():
    pattern = BlobPathPattern("media/incoming/{name}.mp4")
    assert (pattern.container, pattern.list_prefix, pattern.tokens) == ("media", "incoming/", ("name",))


@pytest.mark.parametrize("path", ["{c}/x", "input/{name", "input/{a}{a}", "input/}x", "input/{bad name}"])
def test_blob_path_pattern_rejects_bad_paths(path):
    with pytest.raises(DevHostError):
        BlobPathPattern(path)


# -- settings ---------------------------------------------------------------------------------
def test_local_settings_created_from_sample(tmp_path):
    (tmp_path / "local.settings.sample.json").write_text(json.dumps({"Values": {"A": "1", "FLAG": True}}))
    settings = load_local_settings(tmp_path)
    assert settings.created_from_sample and settings.path.exists()
    assert settings.values == {"A": "1", "FLAG": "true"}
    assert not load_local_settings(tmp_path).created_from_sample


def test_local_settings_errors(tmp_path):
    with pytest.raises(DevHostError, match="does not exist"):
        load_local_settings(tmp_path)
    (tmp_path / "local.settings.json").write_text('{"IsEncrypted": true, "Values": {}}')
    with pytest.raises(DevHostError, match="encrypted"):
        load_local_settings(tmp_path)


def test_environment_overlay_keeps_existing_variables_and_restores(monkeypatch):
    monkeypatch.setenv("DEVHOST_T_EXISTING", "from-env")
    monkeypatch.delenv("DEVHOST_T_NEW", raising=False)
    overlay = EnvironmentOverlay()
    overlay.apply({"DEVHOST_T_EXISTING": "from-file", "DEVHOST_T_NEW": "x"})
    import os
    assert os.environ["DEVHOST_T_EXISTING"] == "from-env"        # Core Tools: the environment wins
    assert os.environ["DEVHOST_T_NEW"] == "x"
    assert overlay.skipped == ["DEVHOST_T_EXISTING"]
    overlay.restore()
    assert "DEVHOST_T_NEW" not in os.environ and os.environ["DEVHOST_T_EXISTING"] == "from-env"


def test_app_setting_expressions():
    env = {"INPUT_CONTAINER": "media", "SCHEDULE": "0 */5 * * * *"}
    assert resolve_app_setting_expressions("%INPUT_CONTAINER%/{name}", env, "x") == "media/{name}"
    assert resolve_app_setting_expressions("%SCHEDULE%", env, "x") == "0 */5 * * * *"
    with pytest.raises(DevHostError, match="%MISSING%"):
        resolve_app_setting_expressions("%MISSING%/{name}", env, "x")


# -- connections ------------------------------------------------------------------------------
def test_connection_resolution_order():
    assert resolve_connection(None, {"AzureWebJobsStorage": AZURITE}, "f").setting == "AzureWebJobsStorage"
    env = {"MEDIA": "exact", "AzureWebJobsMEDIA": "prefixed"}
    assert resolve_connection("MEDIA", env, "f").connection_string == "exact"
    assert resolve_connection("MEDIA", {"AzureWebJobsMEDIA": "prefixed"}, "f").setting == "AzureWebJobsMEDIA"


def test_identity_connection_needs_a_connection_string_locally():
    env = {"MEDIA__blobServiceUri": "https://acct.blob.core.windows.net", "MEDIA__queueServiceUri": "https://q"}
    with pytest.raises(DevHostError, match="identity-based.*UseDevelopmentStorage=true"):
        resolve_connection("MEDIA", env, "f")
    with pytest.raises(DevHostError, match="not configured"):
        resolve_connection("MEDIA", {}, "f")


@pytest.mark.parametrize("conn, local", [
    (AZURITE, True),
    ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=k;"
     "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;", True),
    ("DefaultEndpointsProtocol=https;AccountName=prod;AccountKey=k;EndpointSuffix=core.windows.net", False),
])
def test_local_emulator_detection(conn, local):
    assert resolve_connection("S", {"S": conn}, "f").is_local_emulator is local


# -- host id, host.json, poison message ---------------------------------------------------------
def test_host_id():
    app_dir = Path("/srv/app")
    assert derive_host_id({"AzureFunctionsWebHost__hostid": "my-host"}, app_dir) == "my-host"
    assert derive_host_id({"WEBSITE_SITE_NAME": "My_Very-Long-Function-App-Name-For-Media-2026"}, app_dir) == \
        "myvery-long-function-app-name-fo"
    local = derive_host_id({}, app_dir)
    assert local == derive_host_id({}, app_dir) and len(local) <= 32 and local != derive_host_id({}, Path("/b"))
    with pytest.raises(DevHostError):
        derive_host_id({"AzureFunctionsWebHost__hostid": "Bad_Id"}, app_dir)


def test_host_options(tmp_path):
    (tmp_path / "host.json").write_text(json.dumps({"version": "2.0", "Extensions": {
        "Queues": {"MaxDequeueCount": 3, "messageEncoding": "None"}, "blobs": {"maxDegreeOfParallelism": 2}}}))
    options = load_host_options(tmp_path)
    assert (options.max_dequeue_count, options.message_encoding, options.max_degree_of_parallelism) == (3, "none", 2)
    (tmp_path / "host.json").write_text('{"version": "2.0"}')
    assert load_host_options(tmp_path).max_dequeue_count == 5


def test_poison_message_shape_matches_blob_trigger_message():
    assert blob_trigger_message("Host.Functions.f", "input", "a/b.mp4", '"0x1"') == (
        '{"Type":"BlobTrigger","FunctionId":"Host.Functions.f","BlobType":"BlockBlob",'
        '"ContainerName":"input","BlobName":"a/b.mp4","ETag":"\\"0x1\\""}')


# -- Event Grid parsing -----------------------------------------------------------------------
def test_blob_created_from_path_style_and_account_urls():
    local = blob_created_event("http://127.0.0.1:10000/devstoreaccount1/input/dir/a%20b.mp4", '"0x8D1"', 10)
    assert local["data"]["eTag"] == "0x8D1"   # Event Grid sends it unquoted
    parsed = blob_created(parse_delivery(json.dumps([local]).encode())[0], 0)
    assert (parsed.container, parsed.blob_name, parsed.etag) == ("input", "dir/a b.mp4", "0x8D1")
    azure = blob_created_event("https://acct.blob.core.windows.net/input/%C3%A9.mp4", "0x2", 1)
    assert blob_created(parse_delivery(json.dumps(azure).encode())[0], 0).blob_name == "é.mp4"


def test_validation_code_and_malformed():
    events = parse_delivery(b'[{"eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", '
                            b'"data": {"validationCode": "abc"}}]')
    assert validation_code(events) == "abc"
    for bad in (b"", b"{", b"[]", b"[null]", b'[{"data": {}}]'):
        with pytest.raises(MalformedDelivery):
            parse_delivery(bad)


# -- discovery ----------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def isolated_imports(monkeypatch):
    """discover() imports function_app.py with the app dir on sys.path; undo both after each test."""
    import sys
    monkeypatch.setattr(sys, "path", list(sys.path))
    previous = sys.modules.get("function_app")
    yield
    if previous is None:
        sys.modules.pop("function_app", None)
    else:
        sys.modules["function_app"] = previous


def write_app(tmp_path: Path, body: str) -> Path:
    (tmp_path / "function_app.py").write_text(dedent(body))
    return tmp_path


def test_discovery_reads_the_app_object_once(tmp_path):
    app_dir = write_app(tmp_path, '''
        import azure.functions as func
        app = func.FunctionApp()

        @app.blob_trigger(arg_name="blob", path="input/{name}", connection="S")
        def on_blob(blob: func.InputStream, context: func.Context):
            pass

        @app.function_name("renamed")
        @app.timer_trigger(arg_name="t", schedule="0 */5 * * * *")
        def tick(t: func.TimerRequest):
            pass

        @app.route(route="hello")
        def hello(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse("hi")
    ''')
    functions, skipped = discover(app_dir)
    assert [(f.name, f.function_id, f.trigger_type) for f in functions] == [
        ("on_blob", "Host.Functions.on_blob", "blobTrigger"), ("renamed", "Host.Functions.renamed", "timerTrigger")]
    assert functions[0].wants_context and functions[0].trigger_arg_kind == "stream"
    assert [s.name for s in skipped] == ["hello"]


@pytest.mark.parametrize("body, message", [
    ("import azure.functions as func\n", "no FunctionApp"),
    ("import azure.functions as func\na = func.FunctionApp()\nb = func.FunctionApp()\n", "more than one"),
    ("import azure.functions as func\napp = func.FunctionApp()\n"
     "@app.blob_trigger(arg_name='blob', path='c/{name}', connection='S')\n"
     "def f(blob: dict):\n    pass\n", "not supported"),
    ("import azure.functions as func\napp = func.FunctionApp()\n"
     "@app.blob_trigger(arg_name='blob', path='c/{name}', connection='S')\n"
     "def f(blob: func.InputStream, extra):\n    pass\n", "not bound"),
    ("raise RuntimeError('boom')\n", "importing"),
])
def test_discovery_errors(tmp_path, body, message):
    with pytest.raises(DevHostError, match=message):
        discover(write_app(tmp_path, body))
