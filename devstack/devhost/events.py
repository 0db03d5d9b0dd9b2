"""Event Grid deliveries for the blob trigger's Event Grid source: parse, and build for producers.

Wire formats:
- Event Grid schema: POST body is a JSON array of events with `eventType`, `subject`,
  `data` (event-schema-blob-storage). `Microsoft.Storage.BlobCreated` data carries
  `url`, `eTag`, `contentLength`, `blobType`, `api`.
- CloudEvents 1.0: one object (or an array in batch mode) with `specversion`, `type`,
  `source`, `data`; the validation event's data may arrive as a JSON string
  ("double-encoded", Microsoft.Azure.WebJobs.Extensions.EventGrid HttpRequestProcessor).
- Handshake: `Microsoft.EventGrid.SubscriptionValidationEvent` with
  `data.validationCode`, announced by header `aeg-event-type: SubscriptionValidation`;
  the answer is `{"validationResponse": "<code>"}`.
The host takes container and blob name from `data.url` (BlobsExtensionConfigProvider
GetBlobTriggerMessage uses BlobUriBuilder), so path-style Azurite URLs work too.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from azure.storage.blob import BlobClient

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
SUBSCRIPTION_VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"


class MalformedDelivery(ValueError):
    """The request body is not a valid Event Grid / CloudEvents delivery; answer 400."""


@dataclass(frozen=True)
class Event:
    event_type: str
    event_id: str | None
    subject: str | None
    data: Any


@dataclass(frozen=True)
class BlobCreated:
    container: str
    blob_name: str
    etag: str | None  # None: the event carried none (hand-written test events); the current version is used
    url: str
    event_id: str | None


def parse_delivery(body: bytes) -> list[Event]:
    try:
        document = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedDelivery(f"body is not JSON: {exc}") from exc
    raw_events = document if isinstance(document, list) else [document]
    if not raw_events:
        raise MalformedDelivery("delivery holds no events")
    return [_event(raw, index) for index, raw in enumerate(raw_events)]


def _event(raw: Any, index: int) -> Event:
    if not isinstance(raw, dict):
        raise MalformedDelivery(f"event {index} is not a JSON object")
    if "specversion" in raw:  # CloudEvents 1.0
        event_type, data = raw.get("type"), raw.get("data")
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError:
                pass
    else:
        event_type, data = raw.get("eventType"), raw.get("data")
    if not isinstance(event_type, str) or not event_type:
        raise MalformedDelivery(f"event {index} has no event type")
    event_id = raw.get("id")
    subject = raw.get("subject")
    return Event(event_type, str(event_id) if event_id is not None else None,
                 subject if isinstance(subject, str) else None, data)


def validation_code(events: list[Event]) -> str:
    data = events[0].data
    code = data.get("validationCode") if isinstance(data, dict) else None
    if not isinstance(code, str) or not code:
        raise MalformedDelivery("validation event has no data.validationCode")
    return code


def blob_created(event: Event, index: int) -> BlobCreated:
    data = event.data
    if not isinstance(data, dict):
        raise MalformedDelivery(f"event {index}: BlobCreated without a data object")
    url, etag = data.get("url"), data.get("eTag")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise MalformedDelivery(f"event {index}: data.url must be the blob's http(s) URL")
    if etag is not None and not isinstance(etag, str):
        raise MalformedDelivery(f"event {index}: data.eTag must be a string")
    try:
        parsed = BlobClient.from_blob_url(url)
    except ValueError as exc:
        raise MalformedDelivery(f"event {index}: data.url is not a blob URL: {exc}") from exc
    if not parsed.container_name or not parsed.blob_name:
        raise MalformedDelivery(f"event {index}: data.url names no container/blob")
    return BlobCreated(parsed.container_name, parsed.blob_name, (etag or "").strip() or None, url, event.event_id)


def blob_created_event(url: str, etag: str, content_length: int, *, content_type: str = "application/octet-stream",
                       api: str = "PutBlob", account_resource_id: str | None = None) -> dict[str, Any]:
    """One Microsoft.Storage.BlobCreated event in Event Grid schema, as Event Grid would post it."""
    client = BlobClient.from_blob_url(url)
    topic = account_resource_id or (
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/local/providers/"
        f"Microsoft.Storage/storageAccounts/{client.account_name or 'devstoreaccount1'}")
    return {
        "topic": topic,
        "subject": f"/blobServices/default/containers/{client.container_name}/blobs/{client.blob_name}",
        "eventType": BLOB_CREATED,
        "eventTime": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        "id": str(uuid.uuid4()),
        "data": {
            "api": api,
            "clientRequestId": str(uuid.uuid4()),
            "requestId": str(uuid.uuid4()),
            "eTag": etag.strip('"'),
            "contentType": content_type,
            "contentLength": content_length,
            "blobType": "BlockBlob",
            "url": url,
            "sequencer": f"{uuid.uuid4().int:032x}",
            "storageDiagnostics": {"batchId": str(uuid.uuid4())},
        },
        "dataVersion": "",
        "metadataVersion": "1",
    }


def subscription_validation_event(code: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "topic": "/subscriptions/00000000-0000-0000-0000-000000000000",
        "subject": "",
        "data": {"validationCode": code, "validationUrl": ""},
        "eventType": SUBSCRIPTION_VALIDATION,
        "eventTime": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        "metadataVersion": "1",
        "dataVersion": "1",
    }
