"""The blob trigger's poison queue.

After `maxDequeueCount` failed attempts the host moves the blob's trigger message
to queue `webjobs-blobtrigger-poison` (HostQueueNames.BlobTriggerPoisonQueue) in
the triggering blob's storage account (SharedBlobQueueListenerFactory: "The poison
queue to use for a given poison blob lives in the same storage account as the
triggering blob"). The message is the BlobTriggerMessage JSON (Newtonsoft, compact,
property order Type, FunctionId, BlobType, ContainerName, BlobName, ETag), encoded
with `extensions.queues.messageEncoding` (default base64).
"""
from __future__ import annotations

import json
import threading

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueServiceClient, TextBase64EncodePolicy

POISON_QUEUE = "webjobs-blobtrigger-poison"


def blob_trigger_message(function_id: str, container: str, blob_name: str, etag: str,
                         blob_type: str = "BlockBlob") -> str:
    return json.dumps({
        "Type": "BlobTrigger",
        "FunctionId": function_id,
        "BlobType": blob_type,
        "ContainerName": container,
        "BlobName": blob_name,
        "ETag": etag,
    }, separators=(",", ":"), ensure_ascii=False)


class PoisonQueue:
    def __init__(self, queue_service: QueueServiceClient, message_encoding: str) -> None:
        policy = TextBase64EncodePolicy() if message_encoding == "base64" else None
        self._queue = queue_service.get_queue_client(POISON_QUEUE, message_encode_policy=policy)
        self._created = False
        self._lock = threading.Lock()

    def send(self, message: str) -> None:
        with self._lock:
            if not self._created:
                try:
                    self._queue.create_queue()
                except ResourceExistsError:
                    pass
                self._created = True
        self._queue.send_message(message)
