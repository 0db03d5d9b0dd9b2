"""SDK clients, built once per process and reused (connection pools, token caches).

Locally: the storage connection string (Azurite's well-known key) and the Batch emulator's
shared key. In Azure: identity-based storage URIs and Entra ID tokens from
DefaultAzureCredential (the function app's managed identity), with the authority host and
token scopes taken from settings so sovereign clouds (Azure China) work unchanged.
Retries are the SDK pipelines' (azure-core RetryPolicy / storage ExponentialRetry), bounded so
one invocation stays well inside the function timeout; the host retries the invocation after.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential, TokenCredential
from azure.data.tables import TableClient
from azure.storage.blob import BlobServiceClient

from .settings import Settings, SettingsError

# Bounded pipeline retries: azure-core's default (10 tries, up to 120 s apart) could outlast
# the 5-minute function timeout; 4 tries with backoff capped at 20 s stays near a minute.
_BATCH_RETRY = {"retry_total": 4, "retry_backoff_factor": 0.8, "retry_backoff_max": 20}
_STORAGE_RETRY = {"retry_total": 4}
_TIMEOUTS = {"connection_timeout": 10, "read_timeout": 60}


@dataclass(frozen=True)
class Clients:
    blob_service: BlobServiceClient
    ledger_table: TableClient
    batch: BatchClient
    # Completion events' sinks (EVENTS_SINK): an azure-storage-queue QueueClient, an azure-eventgrid
    # EventGridPublisherClient; None when that sink is off.
    events_queue: Any = None
    events_topic: Any = None


def build_clients(settings: Settings, client_options: Mapping[str, Any] | None = None) -> Clients:
    """`client_options` are passed to every SDK client (tests pass a counting `transport`)."""
    options = dict(client_options or {})
    credential = _token_credential(settings) if _needs_token(settings) else None
    if settings.events.topic_endpoint is not None and credential is None:
        credential = _token_credential(settings)   # the topic takes Entra ID only (local auth is off)
    return Clients(
        blob_service=_blob_service(settings, credential, options),
        ledger_table=_ledger_table(settings, credential, options),
        batch=_batch(settings, credential, options),
        events_queue=_events_queue(settings, credential, options) if settings.events.queue else None,
        events_topic=_events_topic(settings, credential, options) if settings.events.topic_endpoint else None,
    )


def _needs_token(settings: Settings) -> bool:
    return settings.storage.uses_identity or settings.batch_account_key is None


def _events_queue(settings: Settings, credential: TokenCredential | None, options: dict[str, Any]) -> Any:
    # Imported here: only a process that publishes to a queue needs azure-storage-queue loaded.
    from azure.storage.queue import QueueClient

    kwargs = _storage_kwargs(settings, options)
    assert settings.events.queue is not None
    if settings.storage.connection_string is not None:
        return QueueClient.from_connection_string(settings.storage.connection_string, settings.events.queue, **kwargs)
    if settings.storage.queue_service_uri is None:
        raise SettingsError("MEDIA_STORAGE__queueServiceUri", "EVENTS_SINK publishes to a storage queue: set the "
                                                               "queue service URI")
    return QueueClient(settings.storage.queue_service_uri, settings.events.queue, credential=credential, **kwargs)


def _events_topic(settings: Settings, credential: TokenCredential | None, options: dict[str, Any]) -> Any:
    from azure.eventgrid import EventGridPublisherClient

    assert settings.events.topic_endpoint is not None and credential is not None
    return EventGridPublisherClient(settings.events.topic_endpoint, credential,
                                    **{**_STORAGE_RETRY, **_TIMEOUTS, **options})


def _token_credential(settings: Settings) -> TokenCredential:
    # Imported lazily: local runs never need azure-identity's credential chain.
    from azure.identity import DefaultAzureCredential

    kwargs: dict[str, Any] = {}
    if settings.authority_host:
        kwargs["authority"] = settings.authority_host
    if settings.storage.client_id:
        kwargs["managed_identity_client_id"] = settings.storage.client_id
    return DefaultAzureCredential(**kwargs)


def _storage_kwargs(settings: Settings, options: dict[str, Any]) -> dict[str, Any]:
    kwargs = {**_STORAGE_RETRY, **_TIMEOUTS, **options}
    if settings.storage_audience:
        kwargs["audience"] = settings.storage_audience
    return kwargs


def _blob_service(settings: Settings, credential: TokenCredential | None,
                  options: dict[str, Any]) -> BlobServiceClient:
    kwargs = _storage_kwargs(settings, options)
    if settings.storage.connection_string is not None:
        return BlobServiceClient.from_connection_string(settings.storage.connection_string, **kwargs)
    return BlobServiceClient(settings.storage.blob_service_uri, credential=credential, **kwargs)


def _ledger_table(settings: Settings, credential: TokenCredential | None,
                  options: dict[str, Any]) -> TableClient:
    kwargs = _storage_kwargs(settings, options)
    if settings.storage.connection_string is not None:
        return TableClient.from_connection_string(
            settings.storage.connection_string, table_name=settings.ledger_table, **kwargs)
    return TableClient(settings.storage.table_service_uri, table_name=settings.ledger_table,
                       credential=credential, **kwargs)


def _batch(settings: Settings, credential: TokenCredential | None, options: dict[str, Any]) -> BatchClient:
    kwargs = {**_BATCH_RETRY, **_TIMEOUTS, **options}
    if settings.batch_account_key is not None:
        return BatchClient(settings.batch_account_url,
                           AzureNamedKeyCredential(settings.batch_account_name, settings.batch_account_key),
                           **kwargs)
    assert credential is not None and settings.batch_token_scope is not None
    return BatchClient(settings.batch_account_url, credential,
                       credential_scopes=[settings.batch_token_scope], **kwargs)
