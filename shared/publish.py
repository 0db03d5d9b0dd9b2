"""Publishing completion events: the tick's `events` phase, from the ledger's outbox to the sinks.

At least once, never before the row is final, never lost:
1. a row going final brings an outbox marker into its own write's transaction (shared/ledger/table.py), so a
   final row without a pending-or-published event cannot exist;
2. each tick reads one page of markers (the marker key range only: its cost follows the events waiting, not
   the ledger's size), reads their rows, and for a row still final builds its event (shared/events.py) and
   sends it to every sink;
3. only after every sink took it does one transaction record `EventId`, `EventPublishedAt`, `EventSinks` on the
   row and delete the marker (conditional on the marker read: a row that went final again meanwhile keeps its
   new marker). A sink failure leaves the marker: the event is sent again by a later tick, with the same id;
4. a marker whose row is no longer final (run again) is dropped: the row brings a new one when it ends.

Sinks: a storage queue (message = the CloudEvents JSON itself, no base64: any queue client reads it) and an
Event Grid custom topic (CloudEvents schema, the app's identity). Built by shared/runtime.py from EVENTS_SINK.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from azure.core.exceptions import HttpResponseError, ResourceExistsError

from .events import completion_event
from .ledger import OUTCOME_STATES, Col, Ledger, LedgerRow, State, StoredRow
from .log import event, get_logger, scrub

_log = get_logger("events")

EVENTS_PER_TICK = 500        # markers read per tick (one page); what is left waits for the next tick
_WORKERS = 8
_BUDGET_SECONDS = 30.0       # a tick spends at most this long publishing; the rest waits for the next


class Sink(Protocol):
    name: str

    def send(self, message: dict[str, Any]) -> None:
        """Deliver one event or raise."""
        ...


class QueueSink:
    """A storage queue (azure-storage-queue `QueueClient`, built once in shared/clients.py)."""

    name = "queue"

    def __init__(self, queue_client: Any) -> None:
        self._queue = queue_client
        self._ready = False
        self._lock = threading.Lock()

    def ensure(self) -> None:
        """Create the queue once per process when it is missing (locally; in Azure infra creates it and the app
        may only send: a 403 here is expected and harmless)."""
        with self._lock:
            if self._ready:
                return
            try:
                self._queue.create_queue()
            except ResourceExistsError:
                pass
            except HttpResponseError as exc:
                if exc.status_code != 403:
                    raise
                event(_log, logging.INFO, "events.queue_check_skipped", error=getattr(exc, "error_code", None) or "403")
            self._ready = True

    def send(self, message: dict[str, Any]) -> None:
        self.ensure()
        self._queue.send_message(json.dumps(message, ensure_ascii=True, separators=(",", ":")))


class EventGridSink:
    """An Event Grid custom topic in the CloudEvents schema (azure-eventgrid `EventGridPublisherClient`)."""

    name = "eventgrid"

    def __init__(self, client: Any) -> None:
        self._client = client

    def send(self, message: dict[str, Any]) -> None:
        from azure.core.messaging import CloudEvent

        self._client.send(CloudEvent(source=message["source"], type=message["type"], data=message["data"],
                                     subject=message["subject"], id=message["id"],
                                     time=datetime.fromisoformat(message["time"].replace("Z", "+00:00")),
                                     datacontenttype=message["datacontenttype"]))


class EventsNotPublished(RuntimeError):
    """A sink refused events this tick; they stay in the outbox for the next one."""


@dataclass
class PublishResult:
    markers: int = 0
    published: int = 0
    dropped: int = 0          # markers of rows no longer final (run again) or gone
    unsettled: int = 0        # sent, but the marker changed before it could be settled: sent again later
    waiting: int = 0          # not attempted this tick (a sink failed, or the budget ran out)
    errors: list[str] = field(default_factory=list)


class EventPublisher:
    def __init__(self, *, ledger: Ledger, sinks: Sequence[Sink], source: str, output_container: str,
                 output_size: Callable[[str], int | None], clock: Callable[[], datetime],
                 limit: int = EVENTS_PER_TICK, budget_seconds: float = _BUDGET_SECONDS) -> None:
        self._ledger = ledger
        self._sinks = list(sinks)
        self._source = source
        self._output_container = output_container
        self._output_size = output_size
        self._clock = clock
        self._limit = limit
        self._budget = budget_seconds
        self.sink_names = ",".join(s.name for s in self._sinks)

    def run(self) -> PublishResult:
        """One page of the outbox. Raises EventsNotPublished (after doing what it could) when a sink failed."""
        result = PublishResult()
        markers = self._ledger.outbox_page(self._limit)
        result.markers = len(markers)
        if not markers:
            return result
        rows = self._ledger.read_rows([m.entity[Col.EVENT_ROW] for m in markers])
        deadline = time.monotonic() + self._budget
        stop = threading.Event()
        lock = threading.Lock()

        def one(marker: StoredRow) -> None:
            if stop.is_set() or time.monotonic() > deadline:
                with lock:
                    result.waiting += 1
                return
            stored = rows.get(marker.entity[Col.EVENT_ROW])
            row = LedgerRow.from_entity(stored.entity, stored.etag) if stored is not None else None
            outcome = row.state.value if row is not None and isinstance(row.state, State) else None
            if row is None or outcome not in OUTCOME_STATES:
                self._ledger.drop_marker(marker)   # no event for a row that is not final
                with lock:
                    result.dropped += 1
                return
            try:
                message = self._event(row)
                for sink in self._sinks:
                    sink.send(message)
            except Exception as exc:  # noqa: BLE001 - any sink failure: keep the marker, stop this tick
                stop.set()
                with lock:
                    result.waiting += 1
                    result.errors.append(f"{type(exc).__name__}: {scrub(str(exc)).splitlines()[0][:200] if str(exc) else ''}")
                return
            settled = self._ledger.settle_event(marker, {Col.EVENT_ID: message["id"],
                                                         Col.EVENT_PUBLISHED_AT: self._clock(),
                                                         Col.EVENT_SINKS: self.sink_names})
            with lock:
                if settled:
                    result.published += 1
                else:
                    result.unsettled += 1
            event(_log, logging.INFO, "events.published", blob_name=row.input_name, task_id=row.task_id or row.row_key,
                  event_id=message["id"], type=message["type"], sinks=self.sink_names, settled=settled)

        with ThreadPoolExecutor(max_workers=min(_WORKERS, len(markers))) as pool:
            list(pool.map(one, markers))
        level = logging.WARNING if result.errors else logging.INFO
        event(_log, level, "events.done", markers=result.markers, published=result.published, dropped=result.dropped,
              unsettled=result.unsettled, waiting=result.waiting, errors="; ".join(result.errors[:3]) or None)
        if result.errors:
            raise EventsNotPublished(f"{len(result.errors)} event(s) not published, {result.waiting} waiting: "
                                     f"{result.errors[0]}")
        return result

    def _event(self, row: LedgerRow) -> dict[str, Any]:
        size = None
        if row.state is State.SUCCEEDED and row.output_name:
            size = self._output_size(row.output_name)
        return completion_event(row, source=self._source, output_container=self._output_container,
                                output_size=size, now=self._clock())
