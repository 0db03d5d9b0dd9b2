"""Blob receipts: which (function, blob name, ETag) the host has already handled.

Layout from the storage extension (BlobReceiptManager.CreateReference): an empty
block blob `blobreceipts/{hostId}/{functionId}/{eTag}/{container}/{blobName}` in
container `azure-webjobs-hosts` of the AzureWebJobsStorage account ("ETag before
the blob name since the blob name can contain embedded slashes"). Metadata
`Incomplete=true` marks a receipt whose work is not finished (BlobReceipt.cs);
a receipt without it is complete. Deleting a receipt makes the blob fire again
(documented way to force reprocessing).
"""
from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

RECEIPTS_DIR = "blobreceipts"
INCOMPLETE_KEY = "Incomplete"


class ReceiptState(enum.Enum):
    CLAIMED = "claimed"          # we just created it (incomplete): do the work
    INCOMPLETE = "incomplete"    # left incomplete by an earlier run: do the work again
    COMPLETE = "complete"        # done: never fire again for this ETag


@dataclass(frozen=True)
class ReceiptKey:
    function_id: str
    container: str
    blob_name: str
    etag: str


class ReceiptStore:
    def __init__(self, hosts_container: ContainerClient, host_id: str) -> None:
        self._container = hosts_container
        self._host_id = host_id

    def blob_name(self, key: ReceiptKey) -> str:
        return f"{self._function_prefix(key.function_id)}{key.etag}/{key.container}/{key.blob_name}"

    def _function_prefix(self, function_id: str) -> str:
        return f"{RECEIPTS_DIR}/{self._host_id}/{function_id}/"

    def claim(self, key: ReceiptKey) -> ReceiptState:
        blob = self._container.get_blob_client(self.blob_name(key))
        try:
            # overwrite=False sends If-None-Match: * (create only), as the host does.
            blob.upload_blob(b"", overwrite=False, metadata={INCOMPLETE_KEY: "true"})
            return ReceiptState.CLAIMED
        except ResourceExistsError:
            pass
        try:
            metadata = blob.get_blob_properties().metadata
        except ResourceNotFoundError:  # deleted between the two calls: try once more
            return self.claim(key)
        return ReceiptState.INCOMPLETE if _is_incomplete(metadata) else ReceiptState.COMPLETE

    def complete(self, key: ReceiptKey) -> None:
        blob = self._container.get_blob_client(self.blob_name(key))
        try:
            blob.set_blob_metadata({})
        except ResourceNotFoundError:
            # Someone deleted the receipt to force a re-run; record completion anyway.
            try:
                blob.upload_blob(b"", overwrite=False)
            except (ResourceExistsError, ResourceModifiedError):
                pass

    def scan(self, function_id: str) -> Iterator[tuple[ReceiptKey, bool]]:
        """Every receipt of a function as (key, is_complete)."""
        prefix = self._function_prefix(function_id)
        for item in self._container.list_blobs(name_starts_with=prefix, include=["metadata"]):
            etag, _, rest = item.name[len(prefix):].partition("/")
            container, _, blob_name = rest.partition("/")
            if etag and container and blob_name:
                yield ReceiptKey(function_id, container, blob_name, etag), not _is_incomplete(item.metadata)


def _is_incomplete(metadata: dict[str, str] | None) -> bool:
    return any(k.lower() == INCOMPLETE_KEY.lower() for k in (metadata or {}))

