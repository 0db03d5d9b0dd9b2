"""Blob trigger execution shared by the container poller and the Event Grid webhook.

Per blob version (function, container, name, ETag):
  receipt claim -> up to maxDequeueCount attempts -> success, or poison message
  -> receipt marked complete.
The real host marks the receipt complete as soon as it has *enqueued* a trigger
message on its internal queue, and the queue then gives at-least-once delivery
(BlobTriggerExecutor.cs / BlobQueueTriggerExecutor.cs). The dev host has no such
queue: it keeps the receipt incomplete until the work is finished (success,
poison, or the blob is gone). The observable behaviour is the same: a version that
was mid-invocation when the host stopped fires again after a restart, a finished
one never does.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobProperties

from .bindings import InvocationContext, blob_argument
from .blobpath import BlobPathPattern
from .clients import StorageClients
from .connections import ResolvedConnection
from .discovery import EVENT_GRID_SOURCE, DiscoveredFunction
from .hostconfig import HostOptions
from .invoker import invoke
from .logs import get_logger
from .poison import PoisonQueue, blob_trigger_message
from .receipts import ReceiptKey, ReceiptState, ReceiptStore

log = get_logger("blobs")


def normalize_etag(etag: str) -> str:
    """ETags from List Blobs and Event Grid come unquoted; headers quote them. Receipts use the quoted form."""
    etag = etag.strip()
    return etag if etag.startswith('"') else f'"{etag}"'


@dataclass(frozen=True)
class BlobFunction:
    function: DiscoveredFunction
    pattern: BlobPathPattern
    connection: ResolvedConnection
    source: str            # "EventGrid" or "LogsAndContainerScan" (as declared)
    polled: bool           # scanned by the container poller (polling source, or Event Grid fallback)

    @property
    def name(self) -> str:
        return self.function.name

    @property
    def function_id(self) -> str:
        return self.function.function_id


@dataclass(frozen=True)
class _WorkItem:
    function: BlobFunction
    key: ReceiptKey
    detected_by: str       # log reason: LogsAndContainerScan / EventGrid / restart


@dataclass
class DispatcherStats:
    dispatched: int = 0
    succeeded: int = 0
    poisoned: int = 0
    dropped: int = 0
    abandoned: list[ReceiptKey] = field(default_factory=list)


class BlobDispatcher:
    def __init__(self, receipts: ReceiptStore, clients: StorageClients, options: HostOptions,
                 download_blob_content: bool = False) -> None:
        self._receipts = receipts
        self._clients = clients
        self._options = options
        self._download = download_blob_content
        self._queue: queue.Queue[_WorkItem | None] = queue.Queue()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._inflight: set[ReceiptKey] = set()       # queued or running
        self._running: set[ReceiptKey] = set()
        self._completed: set[ReceiptKey] = set()      # receipts known complete: skip without a storage call
        self._poison_queues: dict[str, PoisonQueue] = {}
        self._stopping = threading.Event()
        self._abandoned = threading.Event()
        self._workers: list[threading.Thread] = []
        self.stats = DispatcherStats()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        for index in range(self._options.max_degree_of_parallelism):
            worker = threading.Thread(target=self._work, name=f"devhost-blob-{index}", daemon=True)
            worker.start()
            self._workers.append(worker)

    def stop(self, grace: float) -> list[ReceiptKey]:
        """Finish running invocations within `grace` seconds; abandon the rest (receipts stay incomplete)."""
        self._stopping.set()
        for _ in self._workers:
            self._queue.put(None)
        with self._changed:
            self._changed.wait_for(lambda: not self._running, timeout=grace)
            abandoned = sorted(self._running, key=lambda k: (k.function_id, k.container, k.blob_name))
            if abandoned:
                # Late finishers must not complete receipts or write poison: the next run redoes them.
                self._abandoned.set()
                self.stats.abandoned.extend(abandoned)
        for key in abandoned:
            log.warning("abandoned in-flight invocation of %s for %s/%s at shutdown; it fires again after restart",
                        key.function_id, key.container, key.blob_name,
                        extra={"event": "blob.abandoned", "function": key.function_id.rsplit(".", 1)[-1],
                               "blob": f"{key.container}/{key.blob_name}", "etag": key.etag})
        return abandoned

    # -- intake ----------------------------------------------------------------------------
    def remember_completed(self, keys: Iterable[ReceiptKey]) -> None:
        with self._lock:
            self._completed.update(keys)

    def is_known(self, key: ReceiptKey) -> bool:
        with self._lock:
            return key in self._completed or key in self._inflight

    def offer(self, function: BlobFunction, container: str, blob_name: str, etag: str, detected_by: str) -> bool:
        """Queue this blob version unless it is done or already queued. True when queued."""
        key = ReceiptKey(function.function_id, container, blob_name, normalize_etag(etag))
        with self._lock:
            if self._stopping.is_set() or key in self._completed or key in self._inflight:
                return False
            self._inflight.add(key)
            self.stats.dispatched += 1
        self._queue.put(_WorkItem(function, key, detected_by))
        return True

    @property
    def busy(self) -> int:
        with self._lock:
            return len(self._inflight)

    def wait_idle(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: not self._inflight, timeout=timeout)

    # -- work ------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._stopping.is_set():
                self._release(item.key, running=False)  # never started: fires after restart
                continue
            with self._lock:
                self._running.add(item.key)
            try:
                self._process(item)
            except Exception:
                # Storage trouble: the receipt stays as it was; the next scan or restart retries.
                log.exception("blob trigger pipeline failed for %s/%s", item.key.container, item.key.blob_name,
                              extra={"event": "blob.pipeline_error", "function": item.function.name})
            finally:
                self._release(item.key, running=True)

    def _release(self, key: ReceiptKey, running: bool) -> None:
        with self._changed:
            self._inflight.discard(key)
            if running:
                self._running.discard(key)
            self._changed.notify_all()

    def _complete(self, key: ReceiptKey) -> None:
        self._receipts.complete(key)
        with self._lock:
            self._completed.add(key)

    def _process(self, item: _WorkItem) -> None:
        fn, key = item.function, item.key
        blob_path = f"{key.container}/{key.blob_name}"
        fields = {"function": fn.name, "blob": blob_path, "etag": key.etag}
        state = self._receipts.claim(key)
        if state is ReceiptState.COMPLETE:
            with self._lock:
                self._completed.add(key)
            return
        if state is ReceiptState.INCOMPLETE:
            log.info("resuming %s for %s: its receipt was left incomplete", fn.name, blob_path,
                     extra={"event": "blob.resume", **fields})
        service = self._clients.blob_service(fn.connection.connection_string)
        client = service.get_blob_client(key.container, key.blob_name)
        max_attempts = self._options.max_dequeue_count
        last_error: BaseException | None = None
        for attempt in range(1, max_attempts + 1):
            if self._stopping.is_set():
                return  # receipt stays incomplete: the next run picks it up
            try:
                props = client.get_blob_properties()
            except ResourceNotFoundError:
                # BlobQueueTriggerExecutor: a blob that no longer exists is dropped.
                log.info("blob %s no longer exists; not invoking %s", blob_path, fn.name,
                         extra={"event": "blob.dropped", "why": "deleted", **fields})
                self._finish(key, "dropped")
                return
            if fn.source != EVENT_GRID_SOURCE and normalize_etag(props.etag) != key.etag:
                # Polling source: a newer version replaced this one; that version fires on its own.
                log.info("blob %s changed since it was detected; this version is skipped", blob_path,
                         extra={"event": "blob.dropped", "why": "etag_changed", "current_etag": props.etag,
                                **fields})
                self._finish(key, "dropped")
                return
            result = invoke(fn.function, self._args_builder(fn, client, props, attempt),
                            reason=f"New blob detected({item.detected_by}): {blob_path}",
                            blob=blob_path, etag=key.etag, attempt=attempt, max_attempts=max_attempts)
            if self._abandoned.is_set():
                return
            if result.succeeded:
                self._finish(key, "succeeded")
                return
            last_error = result.error
        self._poison(fn, key, props, last_error)

    def _args_builder(self, fn: BlobFunction, client, props: BlobProperties, attempt: int):
        def build(invocation_id: str) -> dict:
            kind = fn.function.trigger_arg_kind or "stream"
            args = {fn.function.trigger_param: blob_argument(kind, fn.connection.setting, client, props,
                                                              self._download)}
            if fn.function.wants_context:
                args["context"] = InvocationContext(fn.function, invocation_id, retry_count=attempt - 1,
                                                    max_retry_count=self._options.max_dequeue_count - 1)
            return args
        return build

    def _poison(self, fn: BlobFunction, key: ReceiptKey, props: BlobProperties, error: BaseException | None) -> None:
        blob_type = str(getattr(props.blob_type, "value", props.blob_type) or "BlockBlob")
        message = blob_trigger_message(fn.function_id, key.container, key.blob_name, key.etag, blob_type)
        self._poison_queue(fn.connection).send(message)
        log.error("%s failed %d times for %s/%s; moved to queue webjobs-blobtrigger-poison",
                  fn.name, self._options.max_dequeue_count, key.container, key.blob_name,
                  extra={"event": "blob.poisoned", "function": fn.name, "blob": f"{key.container}/{key.blob_name}",
                         "etag": key.etag, "error": f"{type(error).__name__}: {error}" if error else None})
        self._finish(key, "poisoned")

    def _finish(self, key: ReceiptKey, outcome: str) -> None:
        self._complete(key)
        with self._lock:
            if outcome == "succeeded":
                self.stats.succeeded += 1
            elif outcome == "poisoned":
                self.stats.poisoned += 1
            else:
                self.stats.dropped += 1

    def _poison_queue(self, connection: ResolvedConnection) -> PoisonQueue:
        with self._lock:
            queue_client = self._poison_queues.get(connection.connection_string)
            if queue_client is None:
                queue_client = PoisonQueue(self._clients.queue_service(connection.connection_string),
                                           self._options.message_encoding)
                self._poison_queues[connection.connection_string] = queue_client
            return queue_client
