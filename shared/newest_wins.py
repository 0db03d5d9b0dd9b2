"""The MP3 left under a name is the newest upload's, even when an older version's task finishes last.

Two versions of one name can convert at the same time: the trigger terminates the older versions' in-flight
tasks it finds in the ledger, but two triggers running at once cannot see each other's rows, and a task that
was already uploading cannot be stopped. So after each success the tick checks, at the cost
of one Get Blob Properties per converted file:
1. the input's current ETag is this version's: nothing to do (the common case);
2. otherwise a newer version exists. The MP3's own metadata (`source_etag`) says whose it is: if it is the
   newest's, nothing to do; if it is an older version's, the newest version's task is looked up in Batch -
   already finished: it is run again (the recovery path, `ResubmitReason` says why), so its MP3 replaces the
   stale one within a tick or two; still running: it may upload later and win, but a task completes after
   its uploads, so its upload may also be done already - the process remembers it and checks the MP3 once
   more when that success is recorded.
The guarantee: once every version's task is done, the MP3 is the newest version's and says so in its metadata.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobProperties, BlobServiceClient

from . import naming
from .batch_types import TaskLookup
from .job_periods import JobPeriods
from .ledger import Ledger, LedgerRow
from .log import event, get_logger
from .recovery import Redo, Resubmitter
from .task_columns import RESUBMIT_LIMIT
from .task_spec import META_SOURCE_ETAG

_log = get_logger("newest_wins")

_WORKERS = 8
_WATCH_SIZE = 10_000
STALE_OUTPUT = "re-run: an older upload's MP3 replaced this version's"


@dataclass
class NewestResult:
    checked: int = 0
    stale: int = 0       # MP3s found to be an older version's
    rerun: int = 0       # newest versions run again


class NewestWins:
    def __init__(self, *, blob_service: BlobServiceClient, output_container: str, ledger: Ledger, tasks: TaskLookup,
                 jobs: JobPeriods, resubmitter: Resubmitter, clock: Callable[[], datetime]) -> None:
        self._jobs = jobs
        self._clock = clock
        self._blobs = blob_service
        self._output = output_container
        self._ledger = ledger
        self._tasks = tasks
        self._resubmitter = resubmitter
        # Newest versions whose MP3 an older version's may have replaced while they were still running.
        self._watched: OrderedDict[str, bool] = OrderedDict()
        self._lock = threading.Lock()

    def run(self, succeeded: list[LedgerRow]) -> NewestResult:
        result = NewestResult(checked=len(succeeded))
        if not succeeded:
            return result
        with ThreadPoolExecutor(max_workers=min(_WORKERS, len(succeeded))) as pool:
            suspects = [n for n in pool.map(self._suspect, succeeded) if n is not None]
        for row, current in suspects:
            current_etag = current.etag
            if self._mp3_source(row) in (None, naming.normalize_etag(current_etag)):
                continue  # the newest's MP3 is in place (or no MP3 at all)
            result.stale += 1
            newest_id = naming.task_id(row.input_name, current_etag)
            # The newest version's job follows from when it was written (shared/job_periods.py).
            task = self._tasks.task(self._jobs.job_for(current.last_modified, self._clock()), newest_id)
            if task is not None and task.state != "completed":
                # Still to finish - but its upload may already be done (a task completes after its uploads),
                # so look at the MP3 again when its success is recorded.
                self._watch(newest_id)
                continue
            stored = self._ledger.get(newest_id)
            if stored is None:
                continue  # its trigger has not run yet: it will submit (and win) later
            newest = LedgerRow.from_entity(stored.entity, stored.etag)
            if newest.resubmits >= RESUBMIT_LIMIT:
                event(_log, logging.ERROR, "newest_wins.gave_up", blob_name=naming.printable_name(row.input_name),
                      task_id=newest_id, resubmits=newest.resubmits)
                continue
            outcome = self._resubmitter.redo(newest, STALE_OUTPUT, task_exists=task is not None)
            result.rerun += outcome is Redo.RESUBMITTED
            event(_log, logging.WARNING, "newest_wins.rerun", blob_name=naming.printable_name(row.input_name),
                  stale_task_id=row.task_id or row.row_key, task_id=newest_id, outcome=outcome.value)
        return result

    def _suspect(self, row: LedgerRow) -> tuple[LedgerRow, BlobProperties] | None:
        """(row, the input's current properties) when the MP3 may not be the newest version's: the input now
        holds another version than this row converted, or this row is a newest version an older one raced."""
        task_id = row.task_id or row.row_key
        try:
            current = self._blobs.get_blob_client(row.input_container, row.input_name).get_blob_properties()
        except ResourceNotFoundError:
            return None  # input deleted since: its MP3 stays
        if naming.normalize_etag(current.etag) != naming.normalize_etag(row.input_etag or ""):
            return row, current
        with self._lock:
            watched = self._watched.pop(task_id, None) is not None
        return (row, current) if watched else None

    def _watch(self, task_id: str) -> None:
        with self._lock:
            self._watched[task_id] = True
            while len(self._watched) > _WATCH_SIZE:
                self._watched.popitem(last=False)

    def _mp3_source(self, row: LedgerRow) -> str | None:
        if not row.output_name:
            return None
        try:
            props = self._blobs.get_blob_client(self._output, row.output_name).get_blob_properties()
        except ResourceNotFoundError:
            return None
        source = (props.metadata or {}).get(META_SOURCE_ETAG)
        return naming.normalize_etag(source) if source else ""
