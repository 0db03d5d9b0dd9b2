"""Play Event Grid for the local stack: post a BlobCreated event for a blob to the dev host's webhook.

Azurite emits no events, so a local producer (the one-command demo, benchmarks, the
README's `test.http`-style example) announces its uploads itself, exactly as an
Event Grid subscription would deliver them.
"""
from __future__ import annotations

import httpx
from azure.storage.blob import BlobClient

from .events import blob_created_event


def post_blob_created(webhook_url: str, blob: BlobClient, *, timeout: float = 10.0,
                      client: httpx.Client | None = None) -> httpx.Response:
    """POST one BlobCreated (Event Grid schema) for `blob`'s current version; raises on a non-2xx answer."""
    props = blob.get_blob_properties()
    content_type = props.content_settings.content_type if props.content_settings else None
    event = blob_created_event(blob.url, props.etag, props.size,
                               content_type=content_type or "application/octet-stream")
    headers = {"aeg-event-type": "Notification"}
    response = (client.post(webhook_url, json=[event], headers=headers, timeout=timeout) if client is not None
                else httpx.post(webhook_url, json=[event], headers=headers, timeout=timeout))
    response.raise_for_status()
    return response
