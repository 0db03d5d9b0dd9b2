"""Reconcile Batch task states into the ledger, reading only what changed since a watermark.

One tick:
1. Read the watermark row (partition `~status`, row `watermark`): the latest task
   `stateTransitionTime` already reflected in the ledger.
2. List the job's tasks with `$filter=stateTransitionTime ge <watermark - overlap>` and a `$select`
   of the fields the ledger needs, paged by the SDK (1000 per page). The overlap re-reads a short
   window so a transition the listing showed late (or clock skew) is not skipped; re-reads cost no
   write because rows are only written when they would change.
3. Read the ledger rows of the listed tasks (point reads for a few, one partition scan for many;
   rows this process wrote recently are known without a read), compute each row's new values, and
   write the changed ones in entity-group transactions of at most 100 operations (one partition:
   the job id). Updates are conditional on the ETag read, and never move a row back to an older
   task transition, so an overlapping tick cannot regress a row. A task with no row (submitted by
   an earlier deployment, or its ledger write was lost) is adopted: its origin is read from the
   task itself and a full row is written.
4. Only when every write succeeded does the watermark move to the newest transition seen (itself an
   ETag-conditional write). A failure leaves it behind, and the next tick redoes the window.

Failed tasks carry failureInfo's category, code and message, and the ffmpeg error line from the log
the task uploaded to the logs container on failure (`<task id>/ffmpeg.log`, else its stderr).

Completed-task hygiene (`clean_completed`): tasks completed longer ago than the retention are deleted
from the standing job, but only after their ledger row is read back as final (succeeded/failed) for
that very completion (its TaskStateTime); a task whose row is missing or behind is reconciled
(adopted/updated) first and deleted on a later run. No row is ever lost to a delete.
"""
from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode
from azure.storage.blob import BlobServiceClient

from .gateway import TaskSnapshot
from .ledger import STATUS_PARTITION, Col, State
from .log import event, get_logger, redact_url, scrub
from .naming import printable_name
from .task_spec import FFMPEG_LOG, TRUNCATION_MARKERS

_log = get_logger("reconcile")

WATERMARK_ROW = "watermark"
MAX_TRANSACTION = 100        # entity-group transaction limit (one partition)
_SCAN_MIN_ROWS = 150         # a catch-up scan only pays off when many rows are wanted
_READ_WORKERS = 8
_MAX_TEXT = 1024             # failure texts kept short: a row must stay readable
_LOG_READ_BYTES = 16 * 1024
_CACHE_SIZE = 20_000


class RCol:
    """Columns the reconciler adds to `ledger.Col`."""

    TASK_STATE_TIME = "TaskStateTime"  # the task transition this row reflects (monotonic guard)
    FAILURE_CODE = "FailureCode"
    FFMPEG_ERROR = "FfmpegError"
    REQUEUES = "Requeues"
    ADOPTED_AT = "AdoptedAt"
    WATERMARK = "Watermark"


FINAL_STATES = frozenset({State.SUCCEEDED.value, State.FAILED.value})


class TaskSource(Protocol):
    """The Batch side the reconciler needs (shared/batch_monitor.BatchMonitor)."""

    def list_task_changes(self, since: datetime | None) -> Iterable[TaskSnapshot]: ...

    def list_completed_before(self, cutoff: datetime, limit: int) -> list[TaskSnapshot]: ...

    def task_origin(self, task_id: str): ...

    def delete_task(self, task_id: str) -> bool: ...


class FailureLog(Protocol):
    def error_line(self, task_id: str) -> str | None: ...


@dataclass
class ReconcileResult:
    listed: int = 0
    unchanged: int = 0
    updated: int = 0
    adopted: int = 0
    vanished: int = 0            # no row and the task is gone too (deleted meanwhile): nothing to adopt
    write_failures: int = 0
    transactions: int = 0
    watermark_before: datetime | None = None
    watermark_after: datetime | None = None
    seen_active: int = 0         # listed tasks now active / running: a lower bound for the scaler
    seen_running: int = 0
    newly_succeeded: int = 0
    newly_failed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.write_failures == 0


@dataclass
class HygieneResult:
    candidates: int = 0
    deleted: int = 0
    repaired: int = 0
    kept: int = 0  # row not final yet (repair pending / failed)


# ffmpeg wraps its real complaint in generic follow-ups ("Error opening output files: Invalid argument",
# "Conversion failed!"); those say nothing a person can act on, so they are skipped.
_GENERIC_FFMPEG = re.compile(
    r"^(Error opening (input|output) files?\b|Error parsing options\b|Conversion failed|To ignore this\b|"
    r"Failed to set value\b|Exiting normally\b)", re.IGNORECASE)
_FFMPEG_CONTEXT = re.compile(r"^(\[[^\]]*@ ?0x[0-9a-f]+\]\s*)+")  # "[in#0 @ 0x55d1...] ", also nested ones
# ffmpeg's wording for the common bad inputs is cryptic to a person browsing the ledger; say what it
# means first and keep ffmpeg's own words after it. In priority order, searched over the whole log: a
# cause can follow unrelated noise (a truncated file's video errors come before its "partial file").
_UNREADABLE = "the input is not a readable MP4 (corrupt or truncated upload)"
_PLAIN_CAUSES = (
    (re.compile(r"matches no streams", re.IGNORECASE), "the input has no audio stream"),
    (re.compile(r"moov atom not found", re.IGNORECASE), _UNREADABLE),
    (re.compile("|".join(re.escape(m) for m in TRUNCATION_MARKERS), re.IGNORECASE),
     "the input is truncated: it ends before the audio its index lists (incomplete upload or copy)"),
    (re.compile(r"no decoder found|Decoder \(codec [^)]*\) not found", re.IGNORECASE),
     "the input's audio is in a codec ffmpeg cannot decode (unknown or unsupported audio format)"),
    (re.compile(r"Invalid data found when processing input", re.IGNORECASE), _UNREADABLE),
    (re.compile(r"Empty output stream", re.IGNORECASE), "the input's audio track holds no audio (no packets)"),
)


def ffmpeg_reason(text: str) -> str | None:
    """The first (root-cause) lines of an ffmpeg error log, without context prefixes and generic wrap-ups.

    With `-loglevel error` the log holds only errors, and ffmpeg reports the cause first ("moov atom not
    found", "Stream map '' matches no streams.") before the generic consequences."""
    lines = [line for line in (_FFMPEG_CONTEXT.sub("", raw.strip()) for raw in text.splitlines()) if line]
    meaningful: list[str] = []
    for line in lines:
        if _GENERIC_FFMPEG.match(line) or line in meaningful:
            continue
        meaningful.append(line)
        if len(meaningful) == 2:
            break
    if not lines:
        return None
    reason = " / ".join(meaningful) or lines[0]
    for pattern, plain in _PLAIN_CAUSES:
        cause_line = next((line for line in lines if pattern.search(line)), None)
        if cause_line is not None:
            excerpt = reason if pattern.search(reason) else cause_line
            return scrub(f"{plain} (ffmpeg: {excerpt})")[:_MAX_TEXT]
    return scrub(reason)[:_MAX_TEXT]


class BlobFailureLog:
    """Reads the reason from a failed task's ffmpeg log (or its stderr) in the logs container."""

    def __init__(self, blob_service: BlobServiceClient, logs_container: str) -> None:
        self._container = blob_service.get_container_client(logs_container)

    def error_line(self, task_id: str) -> str | None:
        for name in (f"{task_id}/{FFMPEG_LOG}", f"{task_id}/stderr.txt"):
            text = self._head(name)
            reason = ffmpeg_reason(text) if text else None
            if reason:
                return reason
        return None

    def _head(self, blob_name: str) -> str | None:
        try:
            data = self._container.get_blob_client(blob_name).download_blob(offset=0, length=_LOG_READ_BYTES).readall()
        except (ResourceNotFoundError, HttpResponseError):
            return None
        return data.decode("utf-8", "replace")


def ledger_state(task: TaskSnapshot) -> State:
    if task.state == "completed":
        return State.SUCCEEDED if task.result == "success" or (task.result is None and task.exit_code == 0) \
            else State.FAILED
    if task.state in ("running", "preparing"):
        return State.RUNNING
    return State.QUEUED  # active: waiting for a node, or for a retry after a failed try


def _ms(moment: datetime | None) -> datetime | None:
    """Millisecond UTC precision: what survives a round trip through every table implementation."""
    if moment is None:
        return None
    moment = moment.astimezone(timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def task_fields(task: TaskSnapshot, *, output_url: str | None, ffmpeg_error: str | None) -> dict[str, Any]:
    """The ledger columns a task's current state determines (None = leave the column alone)."""
    state = ledger_state(task)
    fields: dict[str, Any] = {
        Col.STATE: state.value,
        RCol.TASK_STATE_TIME: _ms(task.state_transition_time),
        Col.RETRIES: task.retry_count,
        RCol.REQUEUES: task.requeue_count,
        Col.NODE_ID: task.node_id,
        Col.STARTED_AT: _ms(task.start_time),
    }
    if state in (State.SUCCEEDED, State.FAILED):
        fields[Col.ENDED_AT] = _ms(task.end_time)
        fields[Col.EXIT_CODE] = task.exit_code
        if task.start_time and task.end_time:
            fields[Col.DURATION_SECONDS] = round((task.end_time - task.start_time).total_seconds(), 3)
    if state is State.SUCCEEDED:
        fields[Col.OUTPUT_URL] = output_url
    if state is State.FAILED:
        failure = task.failure
        message = (failure.message if failure else None) or (
            f"exit code {task.exit_code}" if task.exit_code is not None else "task failed")
        fields[Col.FAILURE_CATEGORY] = failure.category if failure else None
        fields[RCol.FAILURE_CODE] = failure.code if failure else None
        fields[Col.FAILURE_MESSAGE] = scrub(message)[:_MAX_TEXT]
        fields[RCol.FFMPEG_ERROR] = ffmpeg_error
        fields[Col.REASON] = (_ended_reason(task) or ffmpeg_error or scrub(message))[:_MAX_TEXT]
    return {k: v for k, v in fields.items() if v is not None}


def _ended_reason(task: TaskSnapshot) -> str | None:
    """Terminate Task ends a task with usererror/TaskEnded ("Task Was Ended by User Request"). The app
    terminates a task only when a newer upload of the same name supersedes it (submit.py); say so."""
    failure = task.failure
    if failure is None or failure.code != "TaskEnded" or failure.category != "usererror":
        return None
    return "ended on request: superseded by a newer upload of the same name (or terminated by an operator)"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, datetime) and isinstance(b, datetime):
        return _ms(a) == _ms(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


@dataclass(frozen=True)
class _Row:
    entity: dict[str, Any]
    etag: str | None


class Reconciler:
    """Built once per worker process (it keeps a small cache of rows it knows are current)."""

    def __init__(self, *, tasks: TaskSource, table: TableClient, job_id: str, overlap: timedelta,
                 failure_log: FailureLog | None, output_url: Callable[[str], str] | None,
                 clock: Callable[[], datetime]) -> None:
        self._tasks = tasks
        self._table = table
        self._job_id = job_id
        self._overlap = overlap
        self._failure_log = failure_log
        self._output_url = output_url
        self._clock = clock
        # task id -> TaskStateTime its row is known to reflect (written or read by this process).
        # Rows only move forward, so "known at least this new" stays true whatever other ticks do.
        self._known: OrderedDict[str, datetime] = OrderedDict()
        self._known_lock = threading.Lock()

    # -- watermark --------------------------------------------------------------------------------
    def _load_watermark(self) -> _Row | None:
        try:
            entity = self._table.get_entity(STATUS_PARTITION, WATERMARK_ROW)
        except ResourceNotFoundError:
            return None
        return _Row(dict(entity), entity.metadata.get("etag"))

    def _store_watermark(self, previous: _Row | None, value: datetime) -> bool:
        entity = {"PartitionKey": STATUS_PARTITION, "RowKey": WATERMARK_ROW, RCol.WATERMARK: value,
                  Col.UPDATED_AT: self._clock()}
        try:
            if previous is None:
                self._table.create_entity(entity)
            else:
                self._table.update_entity(entity, mode=UpdateMode.MERGE, etag=previous.etag,
                                          match_condition=MatchConditions.IfNotModified)
            return True
        except (ResourceExistsError, HttpResponseError) as exc:
            # Another tick moved it first (412/409): its value is at least as new as ours.
            event(_log, logging.INFO, "reconcile.watermark_conflict", status=getattr(exc, "status_code", None))
            return False

    def watermark(self) -> datetime | None:
        row = self._load_watermark()
        return row.entity.get(RCol.WATERMARK) if row else None

    # -- reconcile --------------------------------------------------------------------------------
    def run(self) -> ReconcileResult:
        result = ReconcileResult()
        mark_row = self._load_watermark()
        watermark = mark_row.entity.get(RCol.WATERMARK) if mark_row else None
        result.watermark_before = watermark
        since = watermark - self._overlap if watermark else None
        newest: datetime | None = None
        # Keyed by task id: a task that changes while the listing pages can appear twice, and one
        # transaction may not touch a row twice. The later transition wins.
        chunk: dict[str, TaskSnapshot] = {}
        for task in self._tasks.list_task_changes(since):
            result.listed += 1
            if task.state == "active":
                result.seen_active += 1
            elif task.state in ("running", "preparing"):
                result.seen_running += 1
            if task.state_transition_time and (newest is None or task.state_transition_time > newest):
                newest = task.state_transition_time
            seen = chunk.get(task.task_id)
            if seen is None or _later(task, seen):
                chunk[task.task_id] = task
            if len(chunk) >= 1000:
                self._apply(list(chunk.values()), result, catch_up=watermark is None)
                chunk = {}
        if chunk:
            self._apply(list(chunk.values()), result, catch_up=watermark is None)
        if result.complete and newest is not None and (watermark is None or _ms(newest) > _ms(watermark)):
            if self._store_watermark(mark_row, _ms(newest)):
                result.watermark_after = _ms(newest)
        if result.watermark_after is None:
            result.watermark_after = watermark
        level = logging.INFO if result.listed or result.write_failures else logging.DEBUG
        event(_log, level, "reconcile.done", listed=result.listed, updated=result.updated, adopted=result.adopted,
              unchanged=result.unchanged, write_failures=result.write_failures, transactions=result.transactions,
              watermark=result.watermark_after.isoformat() if result.watermark_after else None)
        return result

    def _apply(self, tasks: Sequence[TaskSnapshot], result: ReconcileResult, *, catch_up: bool = False) -> None:
        """Bring the rows of `tasks` up to date: conditional writes, ≤100 per transaction, one retry.

        `catch_up` (no watermark yet: the whole job is listed) reads the ledger partition in pages
        instead of row by row."""
        pending = [t for t in tasks if not self._known_current(t)]
        result.unchanged += len(tasks) - len(pending)
        for attempt in (1, 2):
            if not pending:
                return
            rows = read_rows(self._table, self._job_id, [t.task_id for t in pending],
                             scan=catch_up and len(pending) >= _SCAN_MIN_ROWS)
            operations: list[tuple[TaskSnapshot, tuple]] = []
            for task in pending:
                op = self._operation(task, rows.get(task.task_id), result)
                if op is None:
                    self._remember(task)
                    result.unchanged += 1
                else:
                    operations.append((task, op))
            failed: list[TaskSnapshot] = []
            for start in range(0, len(operations), MAX_TRANSACTION):
                batch = operations[start:start + MAX_TRANSACTION]
                if self._commit([op for _, op in batch], result):
                    for task, op in batch:
                        self._count_write(task, op, rows.get(task.task_id), result)
                        self._remember(task)
                else:
                    failed.extend(task for task, _ in batch)
            pending = failed
        result.write_failures += len(pending)

    def _operation(self, task: TaskSnapshot, row: _Row | None, result: ReconcileResult) -> tuple | None:
        if row is None:
            return self._adoption(task, result)
        known_time = row.entity.get(RCol.TASK_STATE_TIME)
        if known_time is not None and task.state_transition_time is not None \
                and _ms(known_time) > _ms(task.state_transition_time):
            return None  # the row already reflects a newer transition (an overlapping tick)
        state = ledger_state(task)
        if state is State.FAILED and row.entity.get(Col.STATE) == State.FAILED.value \
                and _same(known_time, task.state_transition_time):
            return None  # final and recorded: do not re-read the log
        fields = self._fields(task, row.entity.get(Col.OUTPUT_NAME))
        if all(_same(row.entity.get(k), v) for k, v in fields.items()):
            return None
        fields[Col.UPDATED_AT] = self._clock()
        entity = {"PartitionKey": self._job_id, "RowKey": task.task_id, **fields}
        return ("update", entity, {"mode": UpdateMode.MERGE, "etag": row.etag,
                                   "match_condition": MatchConditions.IfNotModified})

    def _adoption(self, task: TaskSnapshot, result: ReconcileResult) -> tuple | None:
        origin = self._tasks.task_origin(task.task_id)
        if origin is None:
            result.vanished += 1
            return None
        now = self._clock()
        entity: dict[str, Any] = {
            "PartitionKey": self._job_id,
            "RowKey": task.task_id,
            Col.TASK_ID: task.task_id,
            Col.JOB_ID: self._job_id,
            Col.INPUT_NAME: printable_name(origin.input_name) if origin.input_name else None,
            Col.INPUT_CONTAINER: origin.input_container,
            Col.INPUT_ETAG: origin.input_etag,
            Col.OUTPUT_NAME: origin.output_name,
            Col.SUBMITTED_AT: origin.creation_time or task.creation_time,
            RCol.ADOPTED_AT: now,
            Col.UPDATED_AT: now,
            **self._fields(task, origin.output_name),
        }
        entity = {k: v for k, v in entity.items() if v is not None}
        event(_log, logging.WARNING, "reconcile.adopted", task_id=task.task_id,
              blob_name=entity.get(Col.INPUT_NAME), state=entity.get(Col.STATE))
        # Upsert-merge: if the trigger's insert lands first, our newer task state still applies; if ours
        # lands first, the trigger's insert-only write finds the row and leaves it alone.
        return ("upsert", entity, {"mode": UpdateMode.MERGE})

    def _fields(self, task: TaskSnapshot, output_name: str | None) -> dict[str, Any]:
        state = ledger_state(task)
        output_url = None
        if state is State.SUCCEEDED and output_name and self._output_url is not None:
            output_url = redact_url(self._output_url(output_name))
        ffmpeg_error = None
        if state is State.FAILED and self._failure_log is not None:
            ffmpeg_error = self._failure_log.error_line(task.task_id)
        return task_fields(task, output_url=output_url, ffmpeg_error=ffmpeg_error)

    def _count_write(self, task: TaskSnapshot, op: tuple, row: _Row | None, result: ReconcileResult) -> None:
        if op[0] == "upsert":
            result.adopted += 1
        else:
            result.updated += 1
        before = row.entity.get(Col.STATE) if row else None
        after = op[1].get(Col.STATE)
        if after != before:
            if after == State.SUCCEEDED.value:
                result.newly_succeeded += 1
            elif after == State.FAILED.value:
                result.newly_failed += 1

    def _commit(self, operations: list[tuple], result: ReconcileResult) -> bool:
        for attempt in (1, 2):
            try:
                self._table.submit_transaction(operations)
                result.transactions += 1
                return True
            except TableTransactionError as exc:
                if attempt == 1 and _is_table_missing(exc):
                    self._create_table()
                    continue
                # 412 (another tick updated a row) or 404 (row deleted since the read): re-read and redo.
                result.errors.append(f"transaction: {exc.error_code or exc.status_code}")
                event(_log, logging.WARNING, "reconcile.transaction_failed", status=exc.status_code,
                      code=str(exc.error_code), index=getattr(exc, "index", None))
                return False
            except ResourceNotFoundError:
                if attempt == 1:
                    self._create_table()
                    continue
                return False
        return False

    def _create_table(self) -> None:
        try:
            self._table.create_table()
        except ResourceExistsError:
            pass

    # -- cache ------------------------------------------------------------------------------------
    def _known_current(self, task: TaskSnapshot) -> bool:
        if task.state_transition_time is None:
            return False
        with self._known_lock:
            known = self._known.get(task.task_id)
        return known is not None and known >= _ms(task.state_transition_time)

    def _remember(self, task: TaskSnapshot) -> None:
        if task.state_transition_time is None:
            return
        with self._known_lock:
            self._known[task.task_id] = _ms(task.state_transition_time)
            self._known.move_to_end(task.task_id)
            while len(self._known) > _CACHE_SIZE:
                self._known.popitem(last=False)

    def forget(self, task_ids: Iterable[str]) -> None:
        with self._known_lock:
            for tid in task_ids:
                self._known.pop(tid, None)

    # -- completed-task hygiene -------------------------------------------------------------------
    def clean_completed(self, *, retention: timedelta, limit: int = 500) -> HygieneResult:
        """Delete up to `limit` tasks completed more than `retention` ago whose row is final for that
        completion (the row read back is the proof it reached the ledger; no watermark needed)."""
        result = HygieneResult()
        cutoff = self._clock() - retention
        candidates = self._tasks.list_completed_before(cutoff, limit)
        result.candidates = len(candidates)
        if not candidates:
            return result
        rows = read_rows(self._table, self._job_id, [t.task_id for t in candidates])
        final = [t for t in candidates if _row_final_for(rows.get(t.task_id), t)]
        behind = [t for t in candidates if not _row_final_for(rows.get(t.task_id), t)]
        if behind:
            # A completed task whose row is missing or behind (a deleted row, a lost write): repair it now;
            # it is deleted on a later run, after the repaired row is read back.
            self.forget(t.task_id for t in behind)
            repair = ReconcileResult()
            self._apply(behind, repair)
            result.repaired = repair.updated + repair.adopted
            result.kept = len(behind)
        with ThreadPoolExecutor(max_workers=_READ_WORKERS) as pool:
            deleted = sum(1 for ok in pool.map(self._delete, final) if ok)
        result.deleted = deleted
        event(_log, logging.INFO, "reconcile.cleaned", candidates=result.candidates, deleted=deleted,
              repaired=result.repaired, kept=result.kept)
        return result

    def _delete(self, task: TaskSnapshot) -> bool:
        try:
            ok = self._tasks.delete_task(task.task_id)
        except HttpResponseError as exc:
            event(_log, logging.WARNING, "reconcile.delete_failed", task_id=task.task_id, status=exc.status_code)
            return False
        self.forget([task.task_id])
        return ok


def read_rows(table: TableClient, partition: str, row_keys: Sequence[str], *, scan: bool = False,
              select: list[str] | None = None) -> dict[str, _Row]:
    """The existing rows among `row_keys`: parallel point reads, or one paged scan of the partition.

    Point reads stay O(1) however large the ledger partition grows (it keeps every file ever seen), so
    they are the default; a caller that wants most of the partition anyway (a first run) asks for the
    scan. An OR-of-RowKeys filter is not used: the service would scan the partition for each one."""
    if not row_keys:
        return {}
    if scan:
        wanted = set(row_keys)
        rows: dict[str, _Row] = {}
        try:
            for entity in table.query_entities("PartitionKey eq @pk", parameters={"pk": partition},
                                               results_per_page=1000, select=select):
                if entity["RowKey"] in wanted:
                    rows[entity["RowKey"]] = _Row(dict(entity), entity.metadata.get("etag"))
        except ResourceNotFoundError:
            return {}
        return rows

    def read_one(key: str) -> _Row | None:
        try:
            entity = table.get_entity(partition, key, select=select)
        except ResourceNotFoundError:  # no row, or no table yet
            return None
        return _Row(dict(entity), entity.metadata.get("etag"))

    with ThreadPoolExecutor(max_workers=min(_READ_WORKERS, len(row_keys))) as pool:
        found = list(pool.map(read_one, row_keys))
    return {key: row for key, row in zip(row_keys, found) if row is not None}


def _later(a: TaskSnapshot, b: TaskSnapshot) -> bool:
    if a.state_transition_time is None or b.state_transition_time is None:
        return a.state_transition_time is not None
    return a.state_transition_time >= b.state_transition_time


def _row_final_for(row: _Row | None, task: TaskSnapshot) -> bool:
    if row is None or row.entity.get(Col.STATE) not in FINAL_STATES:
        return False
    known = row.entity.get(RCol.TASK_STATE_TIME)
    return known is not None and task.state_transition_time is not None \
        and _ms(known) >= _ms(task.state_transition_time)


def _is_table_missing(exc: HttpResponseError) -> bool:
    code = str(getattr(exc, "error_code", "") or "")
    return exc.status_code == 404 and "TableNotFound" in code
