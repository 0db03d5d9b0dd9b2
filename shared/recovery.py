"""Getting a file going again when the infrastructure, not the file, stopped it.

`Resubmitter.redo` re-adds one file's task (same id: it is derived from name + ETag) with fresh storage
access, after making sure the output containers exist. It first re-checks the input: a version that is
gone or replaced ends the row `failed` with a reason that says so, and a file already resubmitted
`RESUBMIT_LIMIT` times ends `failed` too - never `queued` forever, never a retry loop. Each resubmit is
recorded on the row (`Resubmits`, `ResubmitReason`).

`PendingUploads` retries the uploads whose trigger could not reach Batch or storage (the trigger leaves a
marker in the ledger's `~pending` partition before it gives the failure to the host), so a file uploaded
during an outage is submitted by the first tick after the service is back instead of at the next sweep.
"""
from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from azure.core.exceptions import AzureError
from azure.storage.blob import BlobServiceClient

from . import naming
from .batch_types import AddOutcome, BatchUnavailable, TaskRejected
from .ledger import Col, Ledger, LedgerRow, RowWrite, State
from .log import event, get_logger, scrub
from .submit import Submitter
from .task_columns import RESUBMIT_LIMIT
from .trigger import blob_version

_log = get_logger("recovery")

PENDING_PER_TICK = 50
_MAX_TEXT = 1024


class Redo(str, enum.Enum):
    RESUBMITTED = "resubmitted"
    ENDED = "ended"          # the row is final now (input gone or replaced, or too many resubmits)
    WAITING = "waiting"      # the old task still exists (a delete takes a while): try again next tick


class Resubmitter:
    def __init__(self, *, ledger: Ledger, submitter: Submitter, blob_service: BlobServiceClient,
                 delete_task: Callable[[str, str], bool], terminate_task: Callable[[str, str], bool],
                 reset_containers: Callable[[], None], clock: Callable[[], datetime]) -> None:
        self._ledger = ledger
        self._submitter = submitter
        self._blobs = blob_service
        self._delete_task = delete_task
        self._terminate_task = terminate_task
        self._reset_containers = reset_containers
        self._clock = clock

    def redo(self, row: LedgerRow, why: str, *, task_exists: bool) -> Redo:
        task_id = row.task_id or row.row_key
        current = blob_version(self._blobs.get_blob_client(row.input_container, row.input_name))
        ended = None
        if current.etag is None:
            ended = f"input deleted before it could be converted ({why})"
        elif naming.normalize_etag(current.etag) != naming.normalize_etag(row.input_etag or ""):
            ended = f"superseded by a newer upload of the same name before it could be converted ({why})"
        elif row.resubmits >= RESUBMIT_LIMIT:
            ended = f"{why}; gave up after {row.resubmits} resubmits"
        if ended is not None:
            if task_exists:
                self._terminate_task(row.task_job, task_id)
            self._end(row, ended)
            return Redo.ENDED
        self._reset_containers()
        if task_exists:
            self._delete_task(row.task_job, task_id)
        job_id = self._submitter.job_for(current)  # once: the task and the row name the same job
        try:
            added = self._submitter.add_task(current, job_id=job_id)
        except TaskRejected as exc:
            self._end(row, f"{why}; Batch refused the task again: {exc}")
            return Redo.ENDED
        if added is AddOutcome.ALREADY_EXISTS:
            return Redo.WAITING
        now = self._clock()
        self._ledger.commit([RowWrite("update", {
            "PartitionKey": row.job_id, "RowKey": row.row_key, Col.STATE: State.QUEUED.value,
            Col.JOB_ID: job_id, Col.RESUBMITS: row.resubmits + 1, Col.RESUBMIT_REASON: why[:_MAX_TEXT],
            Col.UPDATED_AT: now}, row.etag)])
        event(_log, logging.WARNING, "recovery.resubmitted", blob_name=naming.printable_name(row.input_name),
              task_id=task_id, reason=why, resubmits=row.resubmits + 1)
        return Redo.RESUBMITTED

    def _end(self, row: LedgerRow, reason: str) -> None:
        self._ledger.commit([RowWrite("update", {
            "PartitionKey": row.job_id, "RowKey": row.row_key, Col.STATE: State.FAILED.value,
            Col.REASON: reason[:_MAX_TEXT], Col.UPDATED_AT: self._clock()}, row.etag)])
        event(_log, logging.WARNING, "recovery.ended", blob_name=naming.printable_name(row.input_name),
              task_id=row.task_id or row.row_key, reason=reason)


@dataclass
class PendingResult:
    markers: int = 0
    submitted: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def all_handled(self) -> bool:
        return not self.errors and self.submitted == self.markers < PENDING_PER_TICK


class PendingUploads:
    def __init__(self, *, ledger: Ledger, submitter: Submitter, blob_service: BlobServiceClient,
                 ensure_containers: Callable[[], None], clock: Callable[[], datetime]) -> None:
        self._ledger = ledger
        self._submitter = submitter
        self._blobs = blob_service
        self._ensure_containers = ensure_containers
        self._clock = clock

    def remember(self, container: str, name: str, error: BaseException) -> None:
        """Called by the trigger when it could not submit: best effort (storage may be down too; then the
        sweep is the safety net)."""
        try:
            now = self._clock()
            self._ledger.remember_pending(naming.name_key(container, name), container, naming.printable_name(name),
                                          scrub(f"{type(error).__name__}: {error}"), now)
            self._ledger.flag_pending(now)
        except AzureError as exc:
            event(_log, logging.WARNING, "recovery.pending_not_recorded", blob_name=naming.printable_name(name),
                  error=type(exc).__name__)

    def retry(self) -> PendingResult:
        """Submit the uploads of up to PENDING_PER_TICK markers; stop at the first infrastructure failure
        (the service is still down: the rest waits for the next tick)."""
        result = PendingResult()
        markers = self._ledger.pending(PENDING_PER_TICK)
        result.markers = len(markers)
        for marker in markers:
            container, name = marker.entity[Col.INPUT_CONTAINER], marker.entity[Col.INPUT_NAME]
            try:
                self._ensure_containers()
                outcome = self._submitter.handle(blob_version(self._blobs.get_blob_client(container, name)))
            except (AzureError, BatchUnavailable) as exc:
                result.errors.append(f"{type(exc).__name__}: {scrub(str(exc)).splitlines()[0][:200]}")
                break
            self._ledger.forget_pending(marker.entity["RowKey"], marker.etag)
            result.submitted += 1
            event(_log, logging.WARNING, "recovery.pending_submitted", blob_name=naming.printable_name(name),
                  row_key=outcome.row_key, state=outcome.state.value)
        return result
