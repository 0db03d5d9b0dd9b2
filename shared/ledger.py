"""The ledger: one Table Storage row per input blob version, readable in Storage Explorer.

Keys
- PartitionKey = the Batch job id: every row of the standing job shares one partition, so the
  reconciler (issue 5) can update up to 100 of them per entity-group transaction.
- RowKey = the task id (`<readable name prefix>-<hash>`, see naming.py): a person finds a file
  by typing the start of its name as a RowKey prefix; the full name is in `InputName`.
- The service's status/summary and watermark rows live apart, in partition `STATUS_PARTITION`
  ('~' is not a legal Batch id character, so it can never equal a job id, and it sorts last).

Writes at submit are insert-only: a duplicate trigger, or a reconciler that already adopted the
task, finds the row present and nothing is overwritten (a late `queued` must never replace
`succeeded`). That is at most one table write per upload in steady state; the table itself is
created lazily the first time an insert finds it missing.
"""
from __future__ import annotations

import enum
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import EdmType, EntityProperty, TableClient

STATUS_PARTITION = "~status"


class State(str, enum.Enum):
    QUEUED = "queued"        # task added to Batch
    RUNNING = "running"      # (reconciler)
    SUCCEEDED = "succeeded"  # (reconciler) MP3 uploaded
    FAILED = "failed"        # (reconciler) ffmpeg or download failed after retries
    SKIPPED = "skipped"      # not work: not an .mp4, or gone before the trigger looked
    REJECTED = "rejected"    # an .mp4 that cannot be processed: empty, unsafe name


class Col:
    """Column names, shared with the reconciler."""

    STATE = "State"
    INPUT_CONTAINER = "InputContainer"
    INPUT_NAME = "InputName"
    INPUT_ETAG = "InputEtag"
    INPUT_SIZE = "InputSize"
    INPUT_CONTENT_TYPE = "InputContentType"
    OUTPUT_NAME = "OutputName"
    TASK_ID = "TaskId"
    JOB_ID = "JobId"
    SUBMITTED_AT = "SubmittedAt"
    REASON = "Reason"
    # Written by the reconciler (issue 5):
    EXIT_CODE = "ExitCode"
    FAILURE_CATEGORY = "FailureCategory"
    FAILURE_MESSAGE = "FailureMessage"
    RETRIES = "Retries"
    NODE_ID = "NodeId"
    STARTED_AT = "StartedAt"
    ENDED_AT = "EndedAt"
    DURATION_SECONDS = "DurationSeconds"
    OUTPUT_URL = "OutputUrl"
    UPDATED_AT = "UpdatedAt"


@dataclass(frozen=True)
class LedgerRow:
    job_id: str
    row_key: str
    state: State
    input_container: str
    input_name: str
    input_etag: str | None
    input_size: int | None
    input_content_type: str | None
    output_name: str | None
    task_id: str | None         # set when a Batch task was added
    recorded_at: datetime
    reason: str | None = None

    def to_entity(self) -> dict[str, Any]:
        entity: dict[str, Any] = {
            "PartitionKey": self.job_id,
            "RowKey": self.row_key,
            Col.STATE: self.state.value,
            Col.INPUT_CONTAINER: self.input_container,
            Col.INPUT_NAME: self.input_name,
            Col.JOB_ID: self.job_id,
            Col.SUBMITTED_AT: self.recorded_at,
            Col.UPDATED_AT: self.recorded_at,
        }
        optional = {
            Col.INPUT_ETAG: self.input_etag,
            Col.INPUT_CONTENT_TYPE: self.input_content_type,
            Col.OUTPUT_NAME: self.output_name,
            Col.TASK_ID: self.task_id,
            Col.REASON: self.reason,
        }
        entity.update({k: v for k, v in optional.items() if v is not None})
        if self.input_size is not None:
            # Int64 explicitly: a 20 GB upload does not fit the SDK's default Int32.
            entity[Col.INPUT_SIZE] = EntityProperty(self.input_size, EdmType.INT64)
        return entity


class LedgerStore(Protocol):
    def record(self, row: LedgerRow) -> bool:
        """Insert the row; False when a row for that blob version already exists."""
        ...

    def in_flight_versions(self, job_id: str, id_prefix: str, input_name: str) -> list[str]:
        """Task ids of the rows of `input_name` (any version) whose task is still queued or running."""
        ...


class TableLedger:
    def __init__(self, table: TableClient) -> None:
        self._table = table
        self._lock = threading.Lock()

    @property
    def table(self) -> TableClient:
        return self._table

    def record(self, row: LedgerRow) -> bool:
        entity = row.to_entity()
        try:
            self._table.create_entity(entity)
            return True
        except ResourceExistsError:
            return False
        except ResourceNotFoundError:
            # TableNotFound: first write into a fresh account; create it, then insert once more.
            self._create_table()
            try:
                self._table.create_entity(entity)
                return True
            except ResourceExistsError:
                return False

    def in_flight_versions(self, job_id: str, id_prefix: str, input_name: str) -> list[str]:
        # Every version of a name has a task id `<id_prefix>-<hash>`: one RowKey range scan inside the
        # job's partition ('.' is the character after '-'), then the exact name, since other names can
        # share the readable prefix ('a-b.mp4' and 'a.mp4' both fall in the range 'a-'..'a.').
        query = (f"PartitionKey eq @job and RowKey ge @low and RowKey lt @high and {Col.INPUT_NAME} eq @name "
                 f"and ({Col.STATE} eq '{State.QUEUED.value}' or {Col.STATE} eq '{State.RUNNING.value}')")
        parameters = {"job": job_id, "low": f"{id_prefix}-", "high": f"{id_prefix}.", "name": input_name}
        try:
            rows = self._table.query_entities(query, parameters=parameters, select=["RowKey", Col.TASK_ID])
            return [row.get(Col.TASK_ID) or row["RowKey"] for row in rows]
        except ResourceNotFoundError:  # no table yet: no earlier versions either
            return []

    def _create_table(self) -> None:
        with self._lock:
            try:
                self._table.create_table()
            except ResourceExistsError:
                pass
