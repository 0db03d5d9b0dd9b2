"""Adapter from the blob trigger's SDK-type binding to the plain value the submit path takes.

The binding hands us an `azure.storage.blob.BlobClient` (azurefunctions-extensions-bindings-blob):
no bytes are downloaded into the worker, so a 20 GB upload costs the same as a 2 MB one. One
Get Blob Properties call gives name, ETag, size, content type and metadata (the per-file options,
shared/options.py); a blob deleted before we look
becomes a `skipped` row, not an exception.
"""
from __future__ import annotations

from collections.abc import Mapping

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobClient

from .submit import BlobVersion


def blob_version(client: BlobClient) -> BlobVersion:
    try:
        props = client.get_blob_properties()
    except ResourceNotFoundError:
        return BlobVersion(container=client.container_name, name=client.blob_name, etag=None, size=None)
    content_type = props.content_settings.content_type if props.content_settings else None
    return BlobVersion(container=client.container_name, name=props.name or client.blob_name, etag=props.etag,
                       size=props.size, content_type=content_type, version_id=props.version_id,
                       modified=props.last_modified, metadata=dict(props.metadata or {}))


def version_metadata(client: BlobClient, etag: str) -> Mapping[str, str] | None:
    """The metadata of exactly this version (a listing that did not include it), or None when the blob is gone
    or has been replaced since (Get Blob Properties conditional on the ETag)."""
    try:
        props = client.get_blob_properties(etag=etag, match_condition=MatchConditions.IfNotModified)
    except (ResourceNotFoundError, ResourceModifiedError):
        return None
    except HttpResponseError as exc:
        if exc.status_code == 412:
            return None
        raise
    return dict(props.metadata or {})
