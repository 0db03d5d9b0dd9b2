"""Container scan for polling-source blob triggers (LogsAndContainerScan).

The real host combines storage analytics logs with a periodic container scan;
Azurite has no analytics logs, so the dev host relies on the scan alone: list the
container (server-side filtered by the path pattern's literal prefix), match each
name against the pattern, and offer every (name, ETag) the dispatcher has not seen.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence

from azure.core.exceptions import ResourceNotFoundError

from .blobs import BlobDispatcher, BlobFunction, normalize_etag
from .clients import StorageClients
from .discovery import POLLING_SOURCE
from .logs import get_logger
from .receipts import ReceiptKey

log = get_logger("poller")


class ContainerPoller:
    def __init__(self, functions: Sequence[BlobFunction], clients: StorageClients, dispatcher: BlobDispatcher,
                 interval: float) -> None:
        self._functions = list(functions)
        self._clients = clients
        self._dispatcher = dispatcher
        self._interval = interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._cond = threading.Condition()
        self._scans_started = 0
        self._scans_completed = 0
        self._missing_containers: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="devhost-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)

    def poll_now(self) -> None:
        self._wake.set()

    def scans_started(self) -> int:
        with self._cond:
            return self._scans_started

    def wait_for_scan_completed(self, count: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._scans_completed >= count or self._stop.is_set(), timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            with self._cond:
                self._scans_started += 1
            try:
                self.scan_once()
            except Exception:
                log.exception("container scan failed; retrying in %.1fs", self._interval,
                              extra={"event": "poll.error"})
            with self._cond:
                self._scans_completed += 1
                self._cond.notify_all()
            self._wake.wait(self._interval)

    def scan_once(self) -> int:
        """One pass over every polled function's container; returns how many blob versions were queued."""
        queued = 0
        for fn in self._functions:
            if self._stop.is_set():
                break
            container = self._clients.blob_service(fn.connection.connection_string).get_container_client(
                fn.pattern.container)
            detected_by = POLLING_SOURCE
            try:
                for item in container.list_blobs(name_starts_with=fn.pattern.list_prefix or None):
                    if fn.pattern.match(item.name) is None or not item.etag:
                        continue
                    key = ReceiptKey(fn.function_id, fn.pattern.container, item.name, normalize_etag(item.etag))
                    if self._dispatcher.is_known(key):  # already done or queued: no storage call
                        continue
                    if self._dispatcher.offer(fn, fn.pattern.container, item.name, item.etag, detected_by):
                        queued += 1
                self._missing_containers.discard(fn.pattern.container)
            except ResourceNotFoundError:
                if fn.pattern.container not in self._missing_containers:
                    self._missing_containers.add(fn.pattern.container)
                    log.info("container %r does not exist yet; %s waits for it", fn.pattern.container, fn.name,
                                extra={"event": "poll.container_missing", "function": fn.name})
        return queued
