"""The ledger table, and the only code that touches it: schema, typed rows, reads, conditional writes.

One row per input blob version, readable in Storage Explorer.
- PartitionKey = the Batch job id: every row of the standing job shares one partition, so the
  reconciler can update up to 100 of them per entity-group transaction.
- RowKey = the task id (`<readable name prefix>-<hash>`, see naming.py): a person finds a file by
  typing the start of its name as a RowKey prefix; the full name is in `InputName`.
- The service's status row (`summary`) and the reconcile watermark (`watermark`) live apart, in
  partition `STATUS_PARTITION` ('~' is not a legal Batch id character, so it can never equal a job
  id, and it sorts last).

Writes at submit are insert-only (a late `queued` must never replace `succeeded`); every later write
is conditional on the ETag read (or an upsert-merge for adoption), so concurrent writers cannot
regress a row. The first write that finds the table missing creates it; reading a missing table
reads as empty.
"""
from __future__ import annotations

import enum
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import EdmType, EntityProperty, TableClient, TableTransactionError, UpdateMode

STATUS_PARTITION = "~status"
SUMMARY_ROW = "summary"
WATERMARK_ROW = "watermark"
MAX_TRANSACTION = 100        # entity-group transaction limit (one partition)
_READ_WORKERS = 8


class State(str, enum.Enum):
    QUEUED = "queued"        # task added to Batch
    RUNNING = "running"      # (reconciler)
    SUCCEEDED = "succeeded"  # (reconciler) MP3 uploaded
    FAILED = "failed"        # (reconciler) ffmpeg or download failed after retries
    SKIPPED = "skipped"      # not work: not an .mp4, or gone before the trigger looked
    REJECTED = "rejected"    # an .mp4 that cannot be processed: empty, unsafe name


FINAL_STATES = frozenset({State.SUCCEEDED.value, State.FAILED.value})


class Col:
    """Every column of a file's row."""

    # Written at submit (the trigger, the sweep, a resubmit):
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
    UPDATED_AT = "UpdatedAt"
    # Written by the reconciler from the task's state:
    TASK_STATE_TIME = "TaskStateTime"  # the task transition this row reflects (monotonic guard)
    EXIT_CODE = "ExitCode"
    FAILURE_CATEGORY = "FailureCategory"
    FAILURE_CODE = "FailureCode"
    FAILURE_MESSAGE = "FailureMessage"
    FFMPEG_ERROR = "FfmpegError"
    RETRIES = "Retries"
    REQUEUES = "Requeues"
    NODE_ID = "NodeId"
    STARTED_AT = "StartedAt"
    ENDED_AT = "EndedAt"
    DURATION_SECONDS = "DurationSeconds"
    OUTPUT_URL = "OutputUrl"
    ADOPTED_AT = "AdoptedAt"           # a task the ledger had no row for (adopted by the reconciler)
    # The watermark row's one column:
    WATERMARK = "Watermark"


@dataclass(frozen=True)
class LedgerRow:
    """A file's row. Submit writes the first block (`to_entity`); a row read back (`from_entity`) also
    carries what the reconciler wrote, and the ETag a conditional replace needs."""

    job_id: str
    row_key: str
    state: State | str          # str: a value this version does not know, shown as it is
    input_container: str
    input_name: str
    input_etag: str | None
    input_size: int | None
    input_content_type: str | None
    output_name: str | None
    task_id: str | None         # set when a Batch task was added
    recorded_at: datetime | None
    reason: str | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_seconds: float | None = None
    exit_code: int | None = None
    failure_category: str | None = None
    failure_code: str | None = None     # Batch failureInfo code
    failure_message: str | None = None
    ffmpeg_error: str | None = None     # the reason read from the task's uploaded log
    retries: int | None = None
    etag: str | None = field(default=None, repr=False, compare=False)

    def to_entity(self) -> dict[str, Any]:
        entity: dict[str, Any] = {
            "PartitionKey": self.job_id,
            "RowKey": self.row_key,
            Col.STATE: State(self.state).value,
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

    @classmethod
    def from_entity(cls, entity: Mapping[str, Any], etag: str | None = None) -> LedgerRow:
        """Any row, however it was written (the trigger, an adoption, an older version): absent or
        mistyped columns read as None."""
        text = lambda col: _text(entity.get(col))  # noqa: E731
        number = lambda col: _number(entity.get(col))  # noqa: E731
        started, ended = _moment(entity.get(Col.STARTED_AT)), _moment(entity.get(Col.ENDED_AT))
        duration = number(Col.DURATION_SECONDS)
        if duration is None and started is not None and ended is not None:
            duration = (ended - started).total_seconds()
        size, exit_code, retries = number(Col.INPUT_SIZE), number(Col.EXIT_CODE), number(Col.RETRIES)
        state = text(Col.STATE) or ""
        return cls(
            job_id=str(entity.get("PartitionKey", "")), row_key=str(entity.get("RowKey", "")),
            state=State(state) if state in _STATES else state,
            input_container=text(Col.INPUT_CONTAINER) or "", input_name=text(Col.INPUT_NAME) or "",
            input_etag=text(Col.INPUT_ETAG), input_size=int(size) if size is not None else None,
            input_content_type=text(Col.INPUT_CONTENT_TYPE), output_name=text(Col.OUTPUT_NAME),
            task_id=text(Col.TASK_ID), recorded_at=_moment(entity.get(Col.SUBMITTED_AT)), reason=text(Col.REASON),
            updated_at=_moment(entity.get(Col.UPDATED_AT)), started_at=started, ended_at=ended,
            duration_seconds=duration, exit_code=int(exit_code) if exit_code is not None else None,
            failure_category=text(Col.FAILURE_CATEGORY), failure_code=text(Col.FAILURE_CODE),
            failure_message=text(Col.FAILURE_MESSAGE), ffmpeg_error=text(Col.FFMPEG_ERROR),
            retries=int(retries) if retries is not None else None, etag=etag)


_STATES = {s.value for s in State}


def _text(value: Any) -> str | None:
    return None if (value := getattr(value, "value", value)) is None else str(value)


def _number(value: Any) -> float | None:
    raw = getattr(value, "value", value)
    try:
        return None if raw is None or isinstance(raw, bool) else float(raw)
    except (TypeError, ValueError):
        return None


def _moment(value: Any) -> datetime | None:
    return value if isinstance(value, datetime) else None


@dataclass(frozen=True)
class StoredRow:
    """A row as read: its columns (keys included) and the ETag a conditional write needs."""

    entity: dict[str, Any]
    etag: str | None


@dataclass(frozen=True)
class RowWrite:
    """One write of a transaction: `update` merges if the row is unchanged since `etag` was read;
    `upsert` merges whatever is there (adoption: the trigger's insert may land before or after)."""

    kind: Literal["update", "upsert"]
    entity: dict[str, Any]
    etag: str | None = None


class RowChanged(Exception):
    """A conditional write found the row changed (or gone) since it was read."""


def _stored(entity: Any) -> StoredRow:
    return StoredRow(dict(entity), entity.metadata.get("etag"))


class Ledger:
    """The ledger table of one job, over the process's one `TableClient`."""

    def __init__(self, table: TableClient, job_id: str) -> None:
        self._table = table
        self.job_id = job_id
        self._create_lock = threading.Lock()

    def record(self, row: LedgerRow) -> bool:
        try:
            self._insert(row.to_entity())
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
        rows = self.query(query, parameters, select=["RowKey", Col.TASK_ID])
        return [row.entity.get(Col.TASK_ID) or row.entity["RowKey"] for row in rows]

    # -- reads --------------------------------------------------------------------------------------
    def get(self, row_key: str, *, partition: str | None = None, select: list[str] | None = None) -> StoredRow | None:
        try:
            return _stored(self._table.get_entity(partition or self.job_id, row_key, select=select))
        except ResourceNotFoundError:  # no row, or no table yet
            return None

    def read_rows(self, row_keys: Sequence[str], *, scan: bool = False,
                  select: list[str] | None = None) -> dict[str, StoredRow]:
        """The existing rows among `row_keys`: parallel point reads, or one paged scan of the partition.

        Point reads stay O(1) however large the partition grows (it keeps every file ever seen), so they
        are the default; a caller that wants most of the partition anyway (a first run) asks for the scan.
        An OR-of-RowKeys filter is not used: the service would scan the partition for each one."""
        if not row_keys:
            return {}
        if scan:
            wanted = set(row_keys)
            return {row.entity["RowKey"]: row for row in self.query("PartitionKey eq @pk", {"pk": self.job_id},
                                                                     select=select)
                    if row.entity["RowKey"] in wanted}
        with ThreadPoolExecutor(max_workers=min(_READ_WORKERS, len(row_keys))) as pool:
            found = list(pool.map(lambda key: self.get(key, select=select), row_keys))
        return {key: row for key, row in zip(row_keys, found) if row is not None}

    def query(self, query: str, parameters: dict[str, Any], *, select: list[str] | None = None) -> Iterator[StoredRow]:
        """Rows matching an OData filter with @parameters, paged 1000 at a time; none when no table."""
        try:
            for entity in self._table.query_entities(query, parameters=parameters, results_per_page=1000,
                                                     select=select):
                yield _stored(entity)
        except ResourceNotFoundError:
            return

    def rows(self, query: str, parameters: dict[str, Any]) -> Iterator[LedgerRow]:
        """Typed rows of this job's partition matching the filter (which must name the partition)."""
        return (LedgerRow.from_entity(row.entity, row.etag) for row in self.query(query, parameters))

    def table_exists(self) -> bool:
        try:
            next(iter(self._table.query_entities("PartitionKey eq @pk", parameters={"pk": STATUS_PARTITION},
                                                 results_per_page=1, select=["RowKey"])), None)
            return True
        except ResourceNotFoundError:
            return False

    # -- writes -------------------------------------------------------------------------------------
    def commit(self, writes: Sequence[RowWrite]) -> str | None:
        """Write up to 100 rows of this job's partition atomically; None on success, else why not
        (412: a row changed since it was read; 404: a row was deleted): the caller re-reads and redoes."""
        assert len(writes) <= MAX_TRANSACTION
        operations = [(w.kind, w.entity, {"mode": UpdateMode.MERGE, "etag": w.etag,
                                          "match_condition": MatchConditions.IfNotModified})
                      if w.kind == "update" else (w.kind, w.entity, {"mode": UpdateMode.MERGE}) for w in writes]
        for attempt in (1, 2):
            try:
                self._table.submit_transaction(operations)
                return None
            except (TableTransactionError, ResourceNotFoundError) as exc:
                code = str(getattr(exc, "error_code", None) or exc.status_code)
                table_missing = isinstance(exc, ResourceNotFoundError) or "TableNotFound" in code
                if attempt == 2 or exc.status_code != 404 or not table_missing:
                    return code
                self._create_table()
        return "TableNotFound"

    def replace(self, entity: dict[str, Any], etag: str | None) -> str:
        """Replace a row if unchanged since `etag` was read; the new ETag. Raises RowChanged."""
        try:
            return self._table.update_entity(entity, mode=UpdateMode.REPLACE, etag=etag,
                                             match_condition=MatchConditions.IfNotModified)["etag"]
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise RowChanged(str(exc)) from exc

    # -- the status partition: the status row and the reconcile watermark ---------------------------
    def read_status(self) -> StoredRow | None:
        return self.get(SUMMARY_ROW, partition=STATUS_PARTITION)

    def write_status(self, columns: dict[str, Any], etag: str | None) -> bool:
        """Insert (etag None) or replace-if-unchanged the status row; False when another tick wrote first."""
        entity = {"PartitionKey": STATUS_PARTITION, "RowKey": SUMMARY_ROW, **columns}
        return self._write_status_partition(entity, etag, UpdateMode.REPLACE)

    def read_watermark(self) -> StoredRow | None:
        return self.get(WATERMARK_ROW, partition=STATUS_PARTITION)

    def write_watermark(self, value: datetime, etag: str | None, now: datetime) -> bool:
        """Move the watermark, conditional on the row read; False when another tick moved it first."""
        entity = {"PartitionKey": STATUS_PARTITION, "RowKey": WATERMARK_ROW, Col.WATERMARK: value,
                  Col.UPDATED_AT: now}
        return self._write_status_partition(entity, etag, UpdateMode.MERGE)

    def _write_status_partition(self, entity: dict[str, Any], etag: str | None, mode: UpdateMode) -> bool:
        try:
            if etag is None:
                self._insert(entity)
            else:
                self._table.update_entity(entity, mode=mode, etag=etag, match_condition=MatchConditions.IfNotModified)
            return True
        except (ResourceExistsError, HttpResponseError):  # 409 / 412: another writer was first
            return False

    def _insert(self, entity: dict[str, Any]) -> None:
        try:
            self._table.create_entity(entity)
        except ResourceNotFoundError:
            # TableNotFound: first write into a fresh account; create it, then insert once more.
            self._create_table()
            self._table.create_entity(entity)

    def _create_table(self) -> None:
        with self._create_lock:
            try:
                self._table.create_table()
            except ResourceExistsError:
                pass
