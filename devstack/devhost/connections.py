"""Resolve a binding's `connection` name to a storage connection string, as the host does.

Host rules (storage extension 5.x, "Connections" in the blob trigger docs and
functions-reference "Identity-based connections"):
- empty connection -> `AzureWebJobsStorage`;
- an app setting with exactly that name wins;
- otherwise `AzureWebJobs<name>`;
- otherwise `<name>__serviceUri` / `<name>__blobServiceUri` / `<name>__accountName`
  select an identity-based connection (managed identity). The dev host cannot
  use those (Azurite has no Entra ID over HTTP), so it asks for a connection string.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import DevHostError

HOST_STORAGE = "AzureWebJobsStorage"
_IDENTITY_SUFFIXES = ("__serviceUri", "__blobServiceUri", "__queueServiceUri", "__accountName", "__credential")


@dataclass(frozen=True)
class ResolvedConnection:
    name: str            # the connection name the binding declared (after defaults)
    setting: str         # the app setting that held the connection string
    connection_string: str

    @property
    def is_local_emulator(self) -> bool:
        """True for Azurite (UseDevelopmentStorage or a loopback endpoint): no Event Grid there."""
        text = self.connection_string.lower()
        if "usedevelopmentstorage=true" in text:
            return True
        endpoints = re.findall(r"(?:blobendpoint)=([^;]+)", text)
        return any(re.match(r"https?://(127\.0\.0\.1|localhost|\[::1\])[:/]", e) for e in endpoints)


def resolve_connection(name: str | None, env: Mapping[str, str], where: str) -> ResolvedConnection:
    connection = name or HOST_STORAGE
    for candidate in (connection, f"AzureWebJobs{connection}"):
        value = env.get(candidate)
        if value:
            return ResolvedConnection(name=connection, setting=candidate, connection_string=value)
    identity = [f"{prefix}{suffix}" for prefix in (connection, f"AzureWebJobs{connection}")
                for suffix in _IDENTITY_SUFFIXES if env.get(f"{prefix}{suffix}")]
    if identity:
        raise DevHostError(
            f"{where}: connection {connection!r} is identity-based ({', '.join(identity)}); the dev host needs a "
            f"connection string. Set the app setting {connection!r} to one "
            f"(for Azurite: UseDevelopmentStorage=true) in local.settings.json")
    raise DevHostError(
        f"{where}: connection {connection!r} is not configured; set app setting {connection!r} "
        f"(or 'AzureWebJobs{connection}') to a storage connection string in local.settings.json")
