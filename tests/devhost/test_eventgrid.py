"""Blob trigger, Event Grid source: the webhook route against a live dev host on a free port."""
from __future__ import annotations

import json

import httpx
import pytest

from devstack.devhost.events import blob_created_event, subscription_validation_event

from .test_blob_polling import poison_messages, upload

pytestmark = pytest.mark.integration

NOTIFY = {"aeg-event-type": "Notification"}


@pytest.fixture
def eg_host(toy_app):
    # Fallback polling off: only the webhook may fire the Event Grid function here.
    return toy_app.host(port=0, eventgrid_fallback_poll="off")


def created_event(blob_service, container: str, name: str, data: bytes = b"clip") -> dict:
    etag = upload(blob_service, container, name, data)
    url = blob_service.get_blob_client(container, name).url
    return blob_created_event(url, etag, len(data))


def post(host, events, function="on_event", headers=NOTIFY, raw: bytes | None = None) -> httpx.Response:
    url = host.webhook_url(function)   # code=<blobs_extension key> included, as Event Grid's subscription URL
    body = raw if raw is not None else json.dumps(events).encode()
    return httpx.post(url, content=body, headers={"content-type": "application/json", **headers}, timeout=10)


def event_calls(app) -> list[str]:
    return sorted(c["name"] for c in app.calls("blob") if c["fn"] == "on_event")


def test_subscription_validation_handshake_event_grid_and_cloud_events_forms(eg_host):
    with_header = post(eg_host, [subscription_validation_event("code-1")],
                       headers={"aeg-event-type": "SubscriptionValidation"})
    assert with_header.status_code == 200 and with_header.json() == {"validationResponse": "code-1"}
    cloud_event = {"specversion": "1.0", "type": "Microsoft.EventGrid.SubscriptionValidationEvent", "id": "1",
                   "source": "x", "data": json.dumps({"validationCode": "code-3"})}
    cloud = post(eg_host, cloud_event, headers={"aeg-event-type": "SubscriptionValidation"})
    assert cloud.json() == {"validationResponse": "code-3"}
    options = httpx.options(eg_host.webhook_url("on_event"), headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
    assert options.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"


def test_single_blob_created_event_invokes_the_function(toy_app, eg_host, blob_service):
    event = created_event(blob_service, toy_app.eventgrid_container, "videos/one clip.mp4")
    response = post(eg_host, [event])
    assert response.status_code == 202
    eg_host.wait_idle()
    [call] = [c for c in toy_app.calls("blob") if c["fn"] == "on_event"]
    assert call["name"] == f"{toy_app.eventgrid_container}/videos/one clip.mp4"
    assert call["etag"] == f'"{event["data"]["eTag"]}"'
    assert call["invocation_id"]


def test_hand_written_event_without_etag_fires_for_the_current_version(toy_app, eg_host, blob_service):
    # test.http-style events carry no eTag: the current version fires; a missing blob is ignored.
    event = created_event(blob_service, toy_app.eventgrid_container, "hand/written.mp4")
    current = blob_service.get_blob_client(toy_app.eventgrid_container, "hand/written.mp4").get_blob_properties().etag
    del event["data"]["eTag"]
    missing = blob_created_event(event["data"]["url"].replace("written.mp4", "absent.mp4"), "x", 1)
    del missing["data"]["eTag"]
    assert post(eg_host, [event, missing]).status_code == 202
    eg_host.wait_idle()
    [call] = [c for c in toy_app.calls("blob") if c["fn"] == "on_event"]
    assert call["name"] == f"{toy_app.eventgrid_container}/hand/written.mp4" and call["etag"] == current


def test_batched_delivery_invokes_once_per_matching_blob_created(toy_app, eg_host, blob_service):
    first = created_event(blob_service, toy_app.eventgrid_container, "a.mp4")
    second = created_event(blob_service, toy_app.eventgrid_container, "b.mp4")
    other_container = created_event(blob_service, toy_app.input_container, "not-mine.mp4")
    deleted = dict(first, eventType="Microsoft.Storage.BlobDeleted", id="deleted-1")
    cloud_event = {"specversion": "1.0", "type": "Microsoft.Storage.BlobCreated", "source": "/x", "id": "ce-1",
                   "data": created_event(blob_service, toy_app.eventgrid_container, "c.mp4")["data"]}
    response = post(eg_host, [first, second, other_container, deleted])
    assert response.status_code == 202
    assert post(eg_host, [cloud_event]).status_code == 202
    eg_host.wait_idle()
    assert event_calls(toy_app) == [f"{toy_app.eventgrid_container}/{n}" for n in ("a.mp4", "b.mp4", "c.mp4")]


def test_other_event_types_are_accepted_and_ignored(toy_app, eg_host, blob_service):
    event = created_event(blob_service, toy_app.eventgrid_container, "ignored.mp4")
    for event_type in ("Microsoft.Storage.BlobDeleted", "Microsoft.Storage.BlobTierChanged"):
        assert post(eg_host, [dict(event, eventType=event_type)]).status_code == 202
    assert post(eg_host, [], headers={"aeg-event-type": "Unsubscribe"}, raw=b"[]").status_code == 202
    eg_host.wait_idle()
    assert event_calls(toy_app) == []


def test_duplicate_delivery_of_one_version_fires_once(toy_app, eg_host, blob_service):
    event = created_event(blob_service, toy_app.eventgrid_container, "dup.mp4")
    assert post(eg_host, [event]).status_code == 202
    eg_host.wait_idle()
    assert post(eg_host, [dict(event, id="redelivered")]).status_code == 202
    eg_host.wait_idle()
    assert len(event_calls(toy_app)) == 1


def test_unknown_or_wrong_function_names(eg_host):
    assert post(eg_host, [], function="nope").status_code == 404
    assert post(eg_host, [], function="tick").status_code == 404          # a timer, not an Event Grid blob trigger
    assert post(eg_host, [], function="on_blob").status_code == 404       # polling-source blob trigger
    missing = httpx.post(f"{eg_host.url}/runtime/webhooks/blobs", params={"code": eg_host.webhook_key.value},
                         content=b"[]", headers=NOTIFY)
    assert missing.status_code == 400


@pytest.mark.parametrize("body", [
    b"not json",
    b"[1, 2]",
    b"[]",
    json.dumps([{"eventType": "Microsoft.Storage.BlobCreated", "data": {"eTag": "0x1"}}]).encode(),
    json.dumps([{"eventType": "Microsoft.Storage.BlobCreated",
                 "data": {"url": "ftp://x/y/z", "eTag": "0x1"}}]).encode(),
    json.dumps([{"data": {}}]).encode(),
])
def test_malformed_deliveries_get_400_and_the_host_keeps_serving(toy_app, eg_host, blob_service, body):
    assert post(eg_host, None, raw=body).status_code == 400
    assert post(eg_host, None, raw=b"{}", headers={"aeg-event-type": "bogus"}).status_code == 400
    event = created_event(blob_service, toy_app.eventgrid_container, "after-bad.mp4")
    assert post(eg_host, [event]).status_code == 202
    eg_host.wait_idle()
    assert event_calls(toy_app) == [f"{toy_app.eventgrid_container}/after-bad.mp4"]


def test_fallback_poll_feeds_event_grid_functions_on_azurite(toy_app, blob_service):
    upload(blob_service, toy_app.eventgrid_container, "polled.mp4")
    toy_app.host(eventgrid_fallback_poll="off").wait_idle()
    assert event_calls(toy_app) == []
    toy_app.hosts[-1].stop()
    toy_app.host().wait_idle()   # default "auto": Azurite connection -> fallback polling on
    assert event_calls(toy_app) == [f"{toy_app.eventgrid_container}/polled.mp4"]


def test_event_grid_failures_poison_like_polling(toy_app, eg_host, blob_service, queue_service):
    event = created_event(blob_service, toy_app.eventgrid_container, "fail.mp4")
    assert post(eg_host, [event]).status_code == 202
    eg_host.wait_idle()
    assert len([c for c in toy_app.calls("blob") if c["fn"] == "on_event"]) == 5
    [message] = poison_messages(queue_service, toy_app.eventgrid_container)
    assert message["FunctionId"] == "Host.Functions.on_event"
    assert message["ETag"] == f'"{event["data"]["eTag"]}"'


def test_host_status_endpoint(eg_host, toy_app):
    status = httpx.get(f"{eg_host.url}/admin/host/status").json()
    assert status == {"id": toy_app.host_id, "state": "Running"}


def test_notify_helper_plays_event_grid_for_an_upload(toy_app, eg_host, blob_service):
    from devstack.devhost.notify import post_blob_created
    upload(blob_service, toy_app.eventgrid_container, "notified.mp4")
    response = post_blob_created(eg_host.webhook_url("on_event"),
                                 blob_service.get_blob_client(toy_app.eventgrid_container, "notified.mp4"))
    assert response.status_code == 202
    eg_host.wait_idle()
    assert event_calls(toy_app) == [f"{toy_app.eventgrid_container}/notified.mp4"]
