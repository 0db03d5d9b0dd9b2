"""The ledger's schema: keys, states, every column, the one typed row, and the shapes of reads and writes.

No I/O here (shared/ledger/table.py does all of it); see shared/ledger/__init__.py for the layout.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

# The table SDK's value type only (Int64 columns); no I/O here.
from azure.data.tables import EdmType, EntityProperty

STATUS_PARTITION = "~status"
SUMMARY_ROW = "summary"
WATERMARK_ROW = "watermark"
# Uploads whose trigger failed (Batch or storage unreachable): one marker each, retried by the tick.
PENDING_PARTITION = "~pending"
MAX_TRANSACTION = 100        # entity-group transaction limit (one partition)
# Completion events' outbox (shared/events.py, docs/events.md): a marker row per file row that went final and
# whose event is not published yet, in the job's own partition so it is written in the same transaction as
# the row. Its RowKey is the prefix + the file's RowKey: '~' sorts after every task id character, so markers
# are one key range at the end of the partition (read without scanning file rows), and file rows are the
# keys below '~' (FILE_ROWS_BELOW).
OUTBOX_PREFIX = "~event-"
FILE_ROWS_BELOW = "~"
# Writes a caller may hand `Ledger.commit` at once: each may bring its outbox marker into the transaction.
MAX_ROWS_PER_COMMIT = MAX_TRANSACTION // 2


class State(str, enum.Enum):
    QUEUED = "queued"        # task added to Batch
    RUNNING = "running"      # (reconciler)
    SUCCEEDED = "succeeded"  # (reconciler) MP3 uploaded
    FAILED = "failed"        # (reconciler) ffmpeg or download failed after retries
    SKIPPED = "skipped"      # not work: not an .mp4, or gone before the trigger looked
    REJECTED = "rejected"    # an .mp4 that cannot be processed: empty, unsafe name


FINAL_STATES = frozenset({State.SUCCEEDED.value, State.FAILED.value})
# Every terminal outcome of an upload: each yields one completion event.
OUTCOME_STATES = frozenset({State.SUCCEEDED.value, State.FAILED.value, State.SKIPPED.value, State.REJECTED.value})


class Col:
    """Every column of a file's row."""

    # Written at submit (the trigger, the sweep, a resubmit):
    STATE = "State"
    INPUT_CONTAINER = "InputContainer"
    INPUT_NAME = "InputName"
    INPUT_ETAG = "InputEtag"
    INPUT_SIZE = "InputSize"
    INPUT_CONTENT_TYPE = "InputContentType"
    INPUT_VERSION_ID = "InputVersionId"     # where the account keeps blob versions: the version converted
    OPTIONS = "Options"                     # the conversion options used (shared/options.py canonical text)
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
    # Written when the app re-adds a file's task itself (vanished task, expired access, missing container):
    RESUBMITS = "Resubmits"
    RESUBMIT_REASON = "ResubmitReason"
    # A pending marker's columns (partition PENDING_PARTITION); INPUT_CONTAINER / INPUT_NAME name the blob:
    FAILED_AT = "FailedAt"
    ERROR = "Error"
    # The status row's flag that markers exist (set by the trigger, cleared by the tick that handled them):
    PENDING_SINCE = "PendingSince"
    # The watermark row's one column:
    WATERMARK = "Watermark"
    # A task listing the reconciler left unfinished (out of time), resumed by the next tick:
    LISTING_STARTED = "ListingStarted"   # when it began (the watermark never passes this)
    LISTING_SINCE = "ListingSince"       # its stateTransitionTime filter (absent: every task)
    LISTING_DONE = "ListingDone"         # jobs listed to the end, comma-separated
    LISTING_JOB = "ListingJob"           # the job it stopped in ...
    LISTING_TOKEN = "ListingToken"       # ... and the continuation token of that job's next page
    LISTING_NEWEST = "ListingNewest"     # the newest transition it has seen so far
    # What was published for the row (shared/events.py): the event's id, when, and to which sinks:
    EVENT_ID = "EventId"
    EVENT_PUBLISHED_AT = "EventPublishedAt"
    EVENT_SINKS = "EventSinks"
    # An outbox marker's columns: the file row it stands for and the outcome it went final with:
    EVENT_ROW = "EventRow"
    EVENT_OUTCOME = "EventOutcome"


@dataclass(frozen=True)
class LedgerRow:
    """A file's row. Submit writes the first block (`to_entity`); a row read back (`from_entity`) also
    carries what the reconciler wrote, and the ETag a conditional replace needs."""

    job_id: str                 # the PartitionKey: BATCH_JOB_ID, the prefix of the period jobs
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
    input_version_id: str | None = None
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
    resubmits: int = 0
    options: str | None = None          # shared/options.py canonical text of the options used
    output_url: str | None = None
    event_id: str | None = None         # the completion event published for this row, if any
    event_published_at: datetime | None = None
    batch_job_id: str | None = None     # the Batch job the task was added to (shared/job_periods.py)
    etag: str | None = field(default=None, repr=False, compare=False)

    @property
    def task_job(self) -> str:
        """The job holding the file's task (rows of the old standing job name it by the partition)."""
        return self.batch_job_id or self.job_id

    def to_entity(self) -> dict[str, Any]:
        entity: dict[str, Any] = {
            "PartitionKey": self.job_id,
            "RowKey": self.row_key,
            Col.STATE: State(self.state).value,
            Col.INPUT_CONTAINER: self.input_container,
            Col.INPUT_NAME: self.input_name,
            Col.JOB_ID: self.task_job,
            Col.SUBMITTED_AT: self.recorded_at,
            Col.UPDATED_AT: self.recorded_at,
        }
        optional = {
            Col.INPUT_ETAG: self.input_etag,
            Col.INPUT_CONTENT_TYPE: self.input_content_type,
            Col.OUTPUT_NAME: self.output_name,
            Col.TASK_ID: self.task_id,
            Col.REASON: self.reason,
            Col.INPUT_VERSION_ID: self.input_version_id,
            Col.OPTIONS: self.options,
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
        resubmits = number(Col.RESUBMITS)
        state = text(Col.STATE) or ""
        return cls(
            job_id=str(entity.get("PartitionKey", "")), row_key=str(entity.get("RowKey", "")),
            state=State(state) if state in _STATES else state,
            input_container=text(Col.INPUT_CONTAINER) or "", input_name=text(Col.INPUT_NAME) or "",
            input_etag=text(Col.INPUT_ETAG), input_size=int(size) if size is not None else None,
            input_content_type=text(Col.INPUT_CONTENT_TYPE), output_name=text(Col.OUTPUT_NAME),
            task_id=text(Col.TASK_ID), recorded_at=_moment(entity.get(Col.SUBMITTED_AT)), reason=text(Col.REASON),
            input_version_id=text(Col.INPUT_VERSION_ID),
            updated_at=_moment(entity.get(Col.UPDATED_AT)), started_at=started, ended_at=ended,
            duration_seconds=duration, exit_code=int(exit_code) if exit_code is not None else None,
            failure_category=text(Col.FAILURE_CATEGORY), failure_code=text(Col.FAILURE_CODE),
            failure_message=text(Col.FAILURE_MESSAGE), ffmpeg_error=text(Col.FFMPEG_ERROR),
            retries=int(retries) if retries is not None else None,
            resubmits=int(resubmits) if resubmits is not None else 0, options=text(Col.OPTIONS),
            output_url=text(Col.OUTPUT_URL), event_id=text(Col.EVENT_ID),
            event_published_at=_moment(entity.get(Col.EVENT_PUBLISHED_AT)), batch_job_id=text(Col.JOB_ID), etag=etag)


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
