"""Resubmitting failed inputs: which rows the operator means, and running each one again safely."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from azure.core.exceptions import HttpResponseError

from shared import naming
from shared.batch_types import AddOutcome, BatchUnavailable
from shared.clock import utc_now
from shared.ledger import LedgerRow, RowChanged, State, StoredRow
from shared.runtime import Service
from shared.submit import BlobVersion
from shared.trigger import blob_version

from .queries import LedgerReader, detail, newest_first, state_text


class ResubmitOutcome(str, Enum):
    RESUBMITTED = "resubmitted"
    NOT_FOUND = "not_found"          # no ledger row by that name or task id
    NOT_FAILED = "not_failed"        # the row is not in state failed
    INPUT_MISSING = "input_missing"  # the input blob no longer exists
    SUPERSEDED = "superseded"        # the blob was re-uploaded: the new version has its own task and row
    TASK_BUSY = "task_busy"          # Batch still runs (or retries) the task
    ERROR = "error"


@dataclass
class ResubmitResult:
    input_name: str
    task_id: str | None
    outcome: ResubmitOutcome
    detail: str


@dataclass(frozen=True)
class ResubmitCandidate:
    entry: LedgerRow | None
    requested: str                   # what the operator typed (or the input name for --all-failed)


def select_candidates(reader: LedgerReader, names: Sequence[str], all_failed: bool) -> list[ResubmitCandidate]:
    if all_failed:
        return [ResubmitCandidate(r, r.input_name) for r in reader.entries([State.FAILED])]
    selected: list[ResubmitCandidate] = []
    seen: set[str] = set()
    for name in names:
        matches = reader.matching(name)
        if not matches:
            selected.append(ResubmitCandidate(None, name))
        # A name can have several versions (re-uploads): its failed ones are what the operator means;
        # with none failed, the newest version explains why nothing is resubmitted.
        failed = [m for m in matches if m.state == State.FAILED]
        for row in failed or sorted(matches, key=newest_first, reverse=True)[:1]:
            if row.row_key not in seen:
                seen.add(row.row_key)
                selected.append(ResubmitCandidate(row, name))
    return selected


_ROW_CHANGED = "the ledger row changed while resubmitting (the timer updated it); try again"


class Resubmitter:
    """Runs one failed blob version again, under the same task id (it is derived from name + ETag).

    Steps, each a precondition for the next so a refusal changes nothing:
    1. the input blob still exists with the row's ETag (else say so: a newer upload has its own task);
    2. the old task is completed or gone (deleting an active or running task would kill work);
    3. the ledger row is reset to what the trigger writes at submit (state queued, no failure
       columns), conditional on the row's ETag so a concurrent reconciler update is not clobbered;
    4. the completed task is deleted (TaskNotFound is fine) and the app's own submit path adds the
       task again with a fresh spec (new short-lived SAS: the old task's may have expired, which is
       why Batch's reactivate-task is not used). If that fails, the row's failure is restored.
    """

    def __init__(self, service: Service, clock: Callable[[], datetime] = utc_now) -> None:
        self._service = service
        self._clock = clock

    def run(self, candidate: ResubmitCandidate) -> ResubmitResult:
        entry = candidate.entry
        if entry is None:
            return ResubmitResult(candidate.requested, None, ResubmitOutcome.NOT_FOUND,
                                  "no ledger row has this input name or task id")
        if entry.state != State.FAILED:
            why = f": {detail(entry)}" if detail(entry) else ""
            return self._result(entry, ResubmitOutcome.NOT_FAILED,
                                f"state is {state_text(entry)}{why}; only failed files are resubmitted")
        version = blob_version(self._service.clients.blob_service.get_blob_client(entry.input_container,
                                                                                  entry.input_name))
        if version.etag is None:
            return self._result(entry, ResubmitOutcome.INPUT_MISSING,
                                f"input blob {entry.input_container}/{entry.input_name} no longer exists; not resubmitted")
        if naming.normalize_etag(version.etag) != naming.normalize_etag(entry.input_etag or ""):
            newer = naming.task_id(version.name, version.etag)
            return self._result(entry, ResubmitOutcome.SUPERSEDED,
                                f"the blob was uploaded again since; the new version is task {newer}; not resubmitted")
        task_id = entry.task_id or entry.row_key
        busy = self._service.batch.task_state(entry.task_job, task_id)
        if busy not in (None, "completed"):
            return self._result(entry, ResubmitOutcome.TASK_BUSY, f"task is still {busy} in Batch; not resubmitted")
        # The row as it is now, to put back if the task cannot be added again.
        original = self._service.ledger.get(entry.row_key)
        if original is None:
            return self._result(entry, ResubmitOutcome.ERROR, _ROW_CHANGED)
        try:
            reset_etag = self._reset_row(entry, version)
        except RowChanged:
            return self._result(entry, ResubmitOutcome.ERROR, _ROW_CHANGED)
        try:
            self._service.batch.delete_task(entry.task_job, task_id)
            self._service.ensure_output_containers()
            outcome = self._service.submitter.handle(version)
        except (BatchUnavailable, HttpResponseError) as exc:
            self._restore_row(original, reset_etag)
            return self._result(entry, ResubmitOutcome.ERROR, f"could not add the task: {exc}; the row stays failed")
        if outcome.state is not State.QUEUED or outcome.task is not AddOutcome.CREATED:
            # The submit path refused (its rules changed since) or the old task survived the delete.
            why = outcome.reason or f"task {outcome.task.value if outcome.task else 'not added'}"
            self._restore_row(original, reset_etag)
            return self._result(entry, ResubmitOutcome.ERROR, f"not resubmitted: {why}; the row stays failed")
        return self._result(entry, ResubmitOutcome.RESUBMITTED, f"task {task_id} added again; state queued")

    def _result(self, entry: LedgerRow, outcome: ResubmitOutcome, text: str) -> ResubmitResult:
        return ResubmitResult(entry.input_name, entry.task_id or entry.row_key, outcome, text)

    def _reset_row(self, entry: LedgerRow, version: BlobVersion) -> str:
        """Replace the row with the one the trigger writes at submit; returns the new ETag. Raises RowChanged."""
        size, content_type = version.size, version.content_type
        row = LedgerRow(job_id=self._service.settings.job_id, batch_job_id=self._service.submitter.job_for(version),
                        row_key=entry.row_key, state=State.QUEUED,
                        input_container=entry.input_container, input_name=entry.input_name,
                        input_etag=entry.input_etag, input_size=size if size is not None else entry.input_size,
                        input_content_type=content_type or entry.input_content_type,
                        output_name=entry.output_name or naming.output_name(entry.input_name),
                        task_id=entry.task_id or entry.row_key, recorded_at=self._clock())
        return self._service.ledger.replace(row.to_entity(), entry.etag)

    def _restore_row(self, original: StoredRow, reset_etag: str) -> None:
        try:
            self._service.ledger.replace(dict(original.entity), reset_etag)
        except RowChanged:
            pass  # someone (the timer) already moved the row on: theirs is newer than ours
