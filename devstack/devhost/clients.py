"""Storage SDK clients, built once per connection string and reused (one pipeline each)."""
from __future__ import annotations

import threading

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueServiceClient

# Container the host keeps its own state in (receipts, timer status, locks).
HOSTS_CONTAINER = "azure-webjobs-hosts"


class StorageClients:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blob: dict[str, BlobServiceClient] = {}
        self._queue: dict[str, QueueServiceClient] = {}

    def blob_service(self, connection_string: str) -> BlobServiceClient:
        with self._lock:
            client = self._blob.get(connection_string)
            if client is None:
                client = self._blob[connection_string] = BlobServiceClient.from_connection_string(connection_string)
            return client

    def queue_service(self, connection_string: str) -> QueueServiceClient:
        with self._lock:
            client = self._queue.get(connection_string)
            if client is None:
                client = self._queue[connection_string] = QueueServiceClient.from_connection_string(connection_string)
            return client

    def hosts_container(self, connection_string: str) -> ContainerClient:
        container = self.blob_service(connection_string).get_container_client(HOSTS_CONTAINER)
        try:
            container.create_container()
        except ResourceExistsError:
            pass
        return container

    def close(self) -> None:
        with self._lock:
            for client in [*self._blob.values(), *self._queue.values()]:
                client.close()
            self._blob.clear()
            self._queue.clear()
