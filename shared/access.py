"""How a Batch node reaches storage for one task: its input blob, the output and logs containers.

Three modes, chosen from settings and the storage credential:
- pool identity (POOL_IDENTITY_RESOURCE_ID set): plain URLs + identityReference; no secret
  travels with the task. The identity must be assigned to the pool by infrastructure code —
  the Batch data plane cannot attach identities to a pool it creates.
- user-delegation SAS (identity-based storage): signed with a key obtained with the function's
  Entra ID identity; needs "Storage Blob Delegator" (part of Storage Blob Data Contributor).
  The key is cached and renewed well before it expires, so it costs no call per upload.
- account-key SAS (a connection string with an AccountKey: Azurite locally).
Input: read-only SAS for exactly that one blob - and, where the account keeps blob versions (infra turns
versioning on), for exactly the version the trigger saw, so an overwrite while the task waits cannot change
what it converts. Azurite has no versioning: locally the task reads the blob by name. Outputs: create+write-only SAS on the output and
logs containers (Batch output files take a container URL). All short-lived (NODE_SAS_TTL_MINUTES):
long enough for a wait for nodes plus every try, never standing.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from urllib.parse import quote, urlsplit

from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ContainerSasPermissions,
    UserDelegationKey,
    generate_blob_sas,
    generate_container_sas,
)

from .clock import Clock, utc_now


@dataclass(frozen=True)
class TaskStorageAccess:
    input_url: str              # the input blob; carries a read SAS unless identity is set
    output_container_url: str   # carries a create/write SAS unless identity is set
    logs_container_url: str
    identity_resource_id: str | None


class NodeAccess(Protocol):
    def for_blob(self, container: str, blob_name: str, version_id: str | None = None) -> TaskStorageAccess:
        """`version_id` (an account with blob versioning): the input URL reads exactly that version."""
        ...


@dataclass(frozen=True)
class Containers:
    output: str
    logs: str


class PoolIdentityAccess:
    """Nodes authenticate with the pool's user-assigned managed identity."""

    def __init__(self, blob_service: BlobServiceClient, containers: Containers, identity_resource_id: str) -> None:
        self._service = blob_service
        self._containers = containers
        self._identity = identity_resource_id

    def for_blob(self, container: str, blob_name: str, version_id: str | None = None) -> TaskStorageAccess:
        url = self._service.get_blob_client(container, blob_name).url
        return TaskStorageAccess(
            input_url=f"{url}?versionid={quote(version_id, safe='')}" if version_id else url,
            output_container_url=self._service.get_container_client(self._containers.output).url,
            logs_container_url=self._service.get_container_client(self._containers.logs).url,
            identity_resource_id=self._identity,
        )


class SasAccess:
    """Short-lived SAS URLs signed with the account key or a cached user delegation key."""

    # A user delegation key lives at most 7 days; take a day (or the SAS lifetime plus an hour).
    _KEY_LIFETIME = timedelta(days=1)
    _CLOCK_SKEW = timedelta(minutes=5)

    def __init__(self, blob_service: BlobServiceClient, containers: Containers, ttl: timedelta,
                 clock: Clock = utc_now) -> None:
        self._service = blob_service
        self._containers = containers
        self._ttl = ttl
        self._clock = clock
        self._account_key: str | None = getattr(blob_service.credential, "account_key", None)
        self._delegation_key: UserDelegationKey | None = None
        self._delegation_key_expiry: datetime | None = None
        self._lock = threading.Lock()
        # https only in Azure; Azurite speaks http.
        self._protocol = "https" if urlsplit(blob_service.url).scheme == "https" else None

    def for_blob(self, container: str, blob_name: str, version_id: str | None = None) -> TaskStorageAccess:
        expiry = self._clock() + self._ttl
        signer = self._signer(expiry)
        account = self._service.account_name
        pinned = {"version_id": version_id} if version_id else {}
        read_sas = generate_blob_sas(account, container, blob_name, permission=BlobSasPermissions(read=True),
                                     expiry=expiry, protocol=self._protocol, **pinned, **signer)
        version_query = f"versionid={quote(version_id, safe='')}&" if version_id else ""
        write = ContainerSasPermissions(create=True, write=True)
        out_sas = generate_container_sas(account, self._containers.output, permission=write,
                                         expiry=expiry, protocol=self._protocol, **signer)
        logs_sas = generate_container_sas(account, self._containers.logs, permission=write,
                                          expiry=expiry, protocol=self._protocol, **signer)
        return TaskStorageAccess(
            input_url=f"{self._service.get_blob_client(container, blob_name).url}?{version_query}{read_sas}",
            output_container_url=f"{self._service.get_container_client(self._containers.output).url}?{out_sas}",
            logs_container_url=f"{self._service.get_container_client(self._containers.logs).url}?{logs_sas}",
            identity_resource_id=None,
        )

    def _signer(self, sas_expiry: datetime) -> dict:
        if self._account_key is not None:
            return {"account_key": self._account_key}
        return {"user_delegation_key": self._user_delegation_key(sas_expiry)}

    def _user_delegation_key(self, sas_expiry: datetime) -> UserDelegationKey:
        # A SAS is only valid while its signing key is; renew before the key would end first.
        with self._lock:
            if (self._delegation_key is None or self._delegation_key_expiry is None
                    or self._delegation_key_expiry < sas_expiry + self._CLOCK_SKEW):
                now = self._clock()
                lifetime = max(self._KEY_LIFETIME, self._ttl + timedelta(hours=1))
                expiry = now + min(lifetime, timedelta(days=7) - self._CLOCK_SKEW)
                self._delegation_key = self._service.get_user_delegation_key(
                    key_start_time=now - self._CLOCK_SKEW, key_expiry_time=expiry)
                self._delegation_key_expiry = expiry
            return self._delegation_key
