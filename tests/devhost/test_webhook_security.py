"""Issue 14: the dev host's HTTP surface is for local, non-browser callers, and its webhook needs the key.

Attacks reproduced against a live dev host (each would have succeeded before the fix):
- a POST to the Event Grid webhook without `code=<blobs_extension key>`, or with a wrong one,
  fired the function (and, for the product app, wrote a ledger row for a name the caller chose);
- a POST without the `aeg-event-type` header was accepted (its kind guessed from the body);
- a request whose Host header names another site (DNS rebinding) or that a web page sent
  (Origin / Sec-Fetch-Site) was served.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import httpx
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

import tests.fixtures.batch_emulator as _emulator_plugin
from devstack.devhost import DevHost, DevHostError
from devstack.devhost.events import blob_created_event, subscription_validation_event
from devstack.devhost.security import (KEY_FILE, KEY_SETTING, is_loopback_host, load_or_create_key_file,
                                       refusal_reason, resolve_webhook_key)
from tests.waiting import wait_for

from .test_blob_polling import RECEIPTS, upload

ROOT = Path(__file__).resolve().parents[2]
NOTIFY = {"aeg-event-type": "Notification"}
VALIDATE = {"aeg-event-type": "SubscriptionValidation"}


# -- live host helpers ---------------------------------------------------------------------------------
@pytest.fixture
def eg_host(toy_app):
    # Fallback polling off: only the webhook can fire the Event Grid function, so "nothing fired" is meaningful.
    return toy_app.host(port=0, eventgrid_fallback_poll="off")


def bare_url(host, function: str = "on_event") -> str:
    """The webhook URL as issue 14's attacker knew it: no key."""
    return f"{host.url}/runtime/webhooks/blobs?functionName=Host.Functions.{function}"


def send(url: str, body=None, headers: dict | None = None, method: str = "POST") -> httpx.Response:
    content = json.dumps(body).encode() if body is not None else None
    return httpx.request(method, url, content=content, timeout=10,
                         headers={"content-type": "application/json", **(headers or {})})


def uploaded_event(toy_app, blob_service, name: str) -> dict:
    etag = upload(blob_service, toy_app.eventgrid_container, name, b"clip")
    return blob_created_event(blob_service.get_blob_client(toy_app.eventgrid_container, name).url, etag, 4)


def fired(toy_app) -> list[str]:
    return [c["name"] for c in toy_app.calls("blob") if c["fn"] == "on_event"]


def receipts(blob_service, toy_app) -> list[str]:
    container = blob_service.get_container_client(RECEIPTS)
    if not container.exists():
        return []
    prefix = f"blobreceipts/{toy_app.host_id}/Host.Functions.on_event/"
    return [b.name for b in container.list_blobs(name_starts_with=prefix)]


def assert_nothing_fired(host, toy_app, blob_service) -> None:
    host.wait_idle()
    assert fired(toy_app) == []
    assert receipts(blob_service, toy_app) == []


def assert_json_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]


# -- the key ------------------------------------------------------------------------------------------
@pytest.mark.integration
def test_webhook_post_without_code_is_401_and_fires_nothing(toy_app, eg_host, blob_service):
    event = uploaded_event(toy_app, blob_service, "attacker-chosen.mp4")
    assert_json_error(send(bare_url(eg_host), [event], NOTIFY), 401)
    # A hand-written event without an eTag (fires the current version) fares no better.
    del event["data"]["eTag"]
    assert_json_error(send(bare_url(eg_host), [event], NOTIFY), 401)
    # Nor does the handshake: no key, no validationResponse.
    handshake = send(bare_url(eg_host), [subscription_validation_event("c")], VALIDATE)
    assert_json_error(handshake, 401)
    assert "validationResponse" not in handshake.text
    assert_nothing_fired(eg_host, toy_app, blob_service)


@pytest.mark.integration
def test_webhook_post_with_a_wrong_code_is_401_and_fires_nothing(toy_app, eg_host, blob_service):
    event = uploaded_event(toy_app, blob_service, "wrong-key.mp4")
    key = eg_host.webhook_key.value
    for wrong in ("", "wrong", key[:-1], key + "x", key.upper() if key.upper() != key else key.lower()):
        assert_json_error(send(f"{bare_url(eg_host)}&code={wrong}", [event], NOTIFY), 401)
    assert_json_error(send(bare_url(eg_host), [event], {**NOTIFY, "x-functions-key": "wrong"}), 401)
    assert_nothing_fired(eg_host, toy_app, blob_service)


@pytest.mark.integration
def test_function_names_cannot_be_probed_without_the_key(eg_host):
    # 401 before the function lookup: an unknown name and a real one answer alike.
    assert_json_error(send(bare_url(eg_host, "nope"), [], NOTIFY), 401)
    assert_json_error(send(bare_url(eg_host, "on_event"), [], NOTIFY), 401)
    assert_json_error(send(f"{eg_host.url}/runtime/webhooks/blobs", [], NOTIFY), 401)


@pytest.mark.integration
def test_right_code_without_aeg_event_type_is_400_and_fires_nothing(toy_app, eg_host, blob_service):
    event = uploaded_event(toy_app, blob_service, "no-header.mp4")
    assert_json_error(send(eg_host.webhook_url("on_event"), [event]), 400)
    # Before, a validation body without the header was answered as a handshake; Azure answers 400.
    assert_json_error(send(eg_host.webhook_url("on_event"), [subscription_validation_event("c")]), 400)
    assert_nothing_fired(eg_host, toy_app, blob_service)


@pytest.mark.integration
def test_right_code_and_header_is_accepted_and_fires(toy_app, eg_host, blob_service):
    event = uploaded_event(toy_app, blob_service, "good.mp4")
    response = send(eg_host.webhook_url("on_event"), [event], NOTIFY)
    assert response.status_code == 202
    eg_host.wait_idle()
    assert fired(toy_app) == [f"{toy_app.eventgrid_container}/good.mp4"]
    # The key may also come in the x-functions-key header, as the Functions host accepts it.
    second = uploaded_event(toy_app, blob_service, "header-key.mp4")
    assert send(bare_url(eg_host), [second], {**NOTIFY, "x-functions-key": eg_host.webhook_key.value}) \
        .status_code == 202
    eg_host.wait_idle()
    assert sorted(fired(toy_app)) == [f"{toy_app.eventgrid_container}/{n}" for n in ("good.mp4", "header-key.mp4")]


@pytest.mark.integration
def test_subscription_validation_handshake_works_with_the_key(eg_host):
    response = send(eg_host.webhook_url("on_event"), [subscription_validation_event("code-42")], VALIDATE)
    assert response.status_code == 200 and response.json() == {"validationResponse": "code-42"}
    # CloudEvents abuse-protection handshake: Event Grid sends it to the subscription URL, key included.
    cloud = {"WebHook-Request-Origin": "eventgrid.azure.net"}
    assert send(bare_url(eg_host), headers=cloud, method="OPTIONS").status_code == 401
    allowed = send(eg_host.webhook_url("on_event"), headers=cloud, method="OPTIONS")
    assert allowed.status_code == 200 and allowed.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"


# -- DNS rebinding and browsers, on every route -------------------------------------------------------
def routes(host) -> list[tuple[str, str, dict | None]]:
    return [("POST", host.webhook_url("on_event"), NOTIFY),
            ("OPTIONS", host.webhook_url("on_event"), None),
            ("GET", f"{host.url}/admin/host/status", None),
            ("GET", f"{host.url}/no/such/route", None)]


@pytest.mark.integration
@pytest.mark.parametrize("host_header", [
    "rebind.attacker.example", "rebind.attacker.example:{port}", "127.0.0.1.attacker.example",
    "localhost.attacker.example:{port}", "127.0.0.2:{port}", "0.0.0.0:{port}", "[::2]:{port}",
    "localhost:{port}@attacker.example", "localhost:abc",
])
def test_requests_with_a_foreign_host_header_are_refused(toy_app, eg_host, blob_service, host_header):
    port = eg_host.url.rsplit(":", 1)[1]
    event = uploaded_event(toy_app, blob_service, "rebound.mp4")
    for method, url, headers in routes(eg_host):
        response = send(url, [event] if method == "POST" else None,
                        {**(headers or {}), "Host": host_header.format(port=port)}, method)
        assert_json_error(response, 403)
    assert_nothing_fired(eg_host, toy_app, blob_service)


@pytest.mark.integration
def test_loopback_host_names_are_served_in_any_case_and_with_any_port(eg_host):
    port = eg_host.url.rsplit(":", 1)[1]
    for host_header in ("127.0.0.1", f"127.0.0.1:{port}", "localhost", f"LocalHost:{port}", "[::1]",
                        f"[::1]:{port}", "localhost:1"):
        response = httpx.get(f"{eg_host.url}/admin/host/status", headers={"Host": host_header}, timeout=10)
        assert response.status_code == 200, host_header


@pytest.mark.integration
@pytest.mark.parametrize("browser_headers", [
    {"Origin": "http://evil.example"},
    {"Origin": "null"},                                      # sandboxed iframe, file:// page
    {"Origin": "http://127.0.0.1:7071"},                     # even a page claiming to be local
    {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"},   # <img>/<form> GET: no Origin sent
    {"Sec-Fetch-Site": "same-site"},
])
def test_requests_from_web_pages_are_refused(toy_app, eg_host, blob_service, browser_headers):
    event = uploaded_event(toy_app, blob_service, "from-a-page.mp4")
    for method, url, headers in routes(eg_host):
        response = send(url, [event] if method == "POST" else None, {**(headers or {}), **browser_headers}, method)
        assert_json_error(response, 403)
        assert "access-control-allow-origin" not in response.headers
    # A CORS preflight gets no CORS answer either.
    preflight = send(eg_host.webhook_url("on_event"), method="OPTIONS",
                     headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 403 and "access-control-allow-origin" not in preflight.headers
    assert_nothing_fired(eg_host, toy_app, blob_service)


@pytest.mark.integration
def test_address_bar_navigation_is_still_served(eg_host):
    # Sec-Fetch-Site: none is what a browser sends for a URL typed by the user (no page involved).
    response = httpx.get(f"{eg_host.url}/admin/host/status", headers={"Sec-Fetch-Site": "none"}, timeout=10)
    assert response.status_code == 200


# -- issue 14 end to end: the product app's ledger ---------------------------------------------------
@pytest.mark.integration
@pytest.mark.skipif(not hasattr(_emulator_plugin, "batch_emulator_module"),
                    reason="batch_emulator fixture not available")
def test_product_app_webhook_without_key_writes_no_ledger_row(tmp_path, storage_connection_string,
                                                              batch_emulator_module, blob_service):
    from shared import runtime
    from tests.app.stack import SAMPLE, unique

    emu = batch_emulator_module
    values = {**SAMPLE, "AzureWebJobsStorage": storage_connection_string, "MEDIA_STORAGE": storage_connection_string,
              "BATCH_ACCOUNT_URL": emu.url, "BATCH_ACCOUNT_NAME": emu.account_name,
              "BATCH_ACCOUNT_KEY": emu.account_key, "BLOB_TRIGGER_SOURCE": "EventGrid",
              "INPUT_CONTAINER": unique("in-"), "OUTPUT_CONTAINER": unique("out-"), "LOGS_CONTAINER": unique("logs-"),
              "LEDGER_TABLE": unique("ledger"), "BATCH_POOL_ID": unique("pool-"), "BATCH_JOB_ID": unique("job-"),
              "TIMER_SCHEDULE": "0 0 0 1 1 *"}
    settings_file = tmp_path / "local.settings.json"
    settings_file.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    name = "chosen by the page.txt"   # not media: a `skipped` row, no Batch task needed
    etag = upload(blob_service, values["INPUT_CONTAINER"], name, b"not a video\n")
    event = blob_created_event(blob_service.get_blob_client(values["INPUT_CONTAINER"], name).url, etag, 12)
    table = TableClient.from_connection_string(storage_connection_string, table_name=values["LEDGER_TABLE"])

    def rows() -> list[dict]:
        try:
            return [e for e in table.list_entities() if e.get("InputName") == name]
        except ResourceNotFoundError:  # the table does not exist until the app writes its first row
            return []

    runtime.set_service(None)
    host = DevHost(ROOT, settings_path=settings_file, port=0, poll_interval=0.2, eventgrid_fallback_poll="off",
                   state_dir=tmp_path / "state").start()
    try:
        url = host.webhook_url("process_upload")
        unkeyed = url.split("&code=")[0]
        assert send(unkeyed, [event], NOTIFY).status_code == 401
        assert send(unkeyed, [event], {**NOTIFY, "Origin": "http://evil.example"}).status_code == 403
        assert send(url, [event], {**NOTIFY, "Host": "rebind.attacker.example"}).status_code == 403
        assert send(url, [event]).status_code == 400
        host.wait_idle(timeout=60)
        assert rows() == []
        assert send(url, [event], NOTIFY).status_code == 202     # the real subscription's delivery still works
        host.wait_idle(timeout=60)
        [row] = wait_for(lambda: rows() or None, 30, what="the ledger row")
        assert row["InputName"] == name
    finally:
        host.stop()
        runtime.set_service(None)
        table.close()


# -- units: key storage and the header rules ---------------------------------------------------------
def test_key_file_is_created_once_private_and_url_safe(tmp_path):
    state = tmp_path / "state"
    key = load_or_create_key_file(state)
    path = state / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) >= 40 and all(c.isalnum() or c in "-_" for c in key)
    assert load_or_create_key_file(state) == key                      # same key on every start
    assert load_or_create_key_file(tmp_path / "other") != key         # another state dir, another key
    assert [p.name for p in state.iterdir()] == [KEY_FILE]            # no temporary left behind


def test_key_file_permissions_are_tightened_and_an_empty_file_is_an_error(tmp_path):
    path = tmp_path / KEY_FILE
    path.write_text("hand-made-key\n")
    os.chmod(path, 0o644)
    assert load_or_create_key_file(tmp_path) == "hand-made-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("")
    with pytest.raises(DevHostError, match="empty"):
        load_or_create_key_file(tmp_path)


def test_setting_overrides_the_key_file(tmp_path):
    explicit = resolve_webhook_key({KEY_SETTING: " set-by-hand "}, tmp_path)
    assert (explicit.value, explicit.source) == ("set-by-hand", KEY_SETTING)
    assert not (tmp_path / KEY_FILE).exists()
    generated = resolve_webhook_key({KEY_SETTING: ""}, tmp_path)
    assert generated.source == str(tmp_path / KEY_FILE) and generated.matches(generated.value)
    assert not generated.matches(None) and not generated.matches(generated.value + " ")


@pytest.mark.parametrize("value, ok", [
    ("127.0.0.1", True), ("127.0.0.1:7071", True), ("localhost", True), ("LOCALHOST:1", True),
    ("[::1]", True), ("[::1]:65535", True),
    ("", False), ("::1", False), ("[::1]x", False), ("localhost.", False), ("127.0.0.1.nip.io", False),
    ("evil.example", False), ("localhost:7071 ", False), ("127.0.0.1:", False), ("localhost:123456", False),
])
def test_loopback_host_values(value, ok):
    assert is_loopback_host(value) is ok


def test_refusal_needs_exactly_one_loopback_host():
    assert refusal_reason([(b"host", b"127.0.0.1:1")]) is None
    assert refusal_reason([]) is not None                                          # HTTP/1.0 without Host
    assert refusal_reason([(b"host", b"127.0.0.1"), (b"host", b"evil.example")]) is not None
    assert refusal_reason([(b"host", b"localhost"), (b"origin", b"")]) is not None
    assert refusal_reason([(b"host", b"localhost"), (b"sec-fetch-site", b"same-origin")]) is None


# -- ./dev start prints the key the dev host checks -----------------------------------------------------
def test_dev_start_prints_the_webhook_and_the_key_the_host_uses(tmp_path, monkeypatch, capsys):
    from devstack import cli, stack

    monkeypatch.setattr(stack, "STATE_DIR", tmp_path)
    monkeypatch.delenv(KEY_SETTING, raising=False)
    monkeypatch.setattr(stack, "ensure_local_settings", lambda: {})
    monkeypatch.setattr(stack, "start", lambda **_: [stack.Component("devhost", 1, 7071, ".devstack/logs/devhost.log")])
    assert cli.cmd_start([]) == 0
    out = capsys.readouterr().out
    key = (tmp_path / KEY_FILE).read_text().strip()     # what `python -m devstack.devhost --state-dir` reads
    assert f"blobs_extension key: {key}" in out
    assert "POST http://127.0.0.1:7071/runtime/webhooks/blobs?functionName=Host.Functions.process_upload&code=" in out
    # A setting wins over the file, as in the host (environment over local.settings.json).
    monkeypatch.setattr(stack, "ensure_local_settings", lambda: {KEY_SETTING: "from-settings"})
    cli.cmd_start([])
    assert "blobs_extension key: from-settings" in capsys.readouterr().out
    monkeypatch.setenv(KEY_SETTING, "from-env")
    cli.cmd_start([])
    assert "blobs_extension key: from-env" in capsys.readouterr().out
