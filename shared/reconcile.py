"""Reconcile Batch task states into the ledger, reading only what changed since a watermark.

One run:
1. Read the watermark (the latest task `stateTransitionTime` already reflected in the ledger).
2. List the tasks of each of our jobs (the tick passes them: the period jobs still in the account) with
   `$filter=stateTransitionTime ge <watermark - overlap>` and a `$select`
   of the fields the ledger needs, paged by the SDK (1000 per page). The overlap re-reads a short
   window so a transition the listing showed late (or clock skew) is not skipped; re-reads cost no
   write because rows are only written when they would change.
3. Read the ledger rows of the listed tasks (point reads for a few, one partition scan for many;
   rows this process wrote recently are known without a read), compute each row's new values, and
   write the changed ones in entity-group transactions of at most 100 operations (one partition:
   the job id; a row going final brings its completion event's outbox marker into the same
   transaction). Updates are conditional on the ETag read, and never move a row back to an older
   task transition, so an overlapping tick cannot regress a row. A task with no row (submitted by
   an earlier deployment, or its ledger write was lost) is adopted: its origin is read from the
   task itself and a full row is written.
4. Only when every write succeeded does the watermark move to the newest transition seen, but never past
   the moment the listing began (itself an ETag-conditional write). A failure leaves it behind, and the
   next run redoes the window.

Bounded: a run stops between pages once its time is up (RECONCILE_BUDGET_SECONDS) and saves where it
stopped - the filter, the jobs listed to the end, the job and continuation token of the next page, the
newest transition seen - in the watermark row; the next tick resumes there. The watermark moves only
when a listing reaches its end, to at most the time it began, so a transition that happened in a job
already listed while the listing went on is inside the next listing's window.

Failed tasks carry failureInfo's category, code and message, and the reason read from the log the
task uploaded to the logs container on failure (shared/failure_logs.py).
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from .batch_types import TaskOrigin, TaskSnapshot
from .ledger import FINAL_STATES, MAX_TRANSACTION, Col, Ledger, LedgerRow, RowWrite, State, StoredRow
from .log import event, get_logger, redact_url
from .naming import printable_name
from .task_columns import RESUBMIT_LIMIT, ledger_state, later, ms, retry_reason, same, task_fields

_log = get_logger("reconcile")

_SCAN_MIN_ROWS = 150         # a catch-up scan only pays off when many rows are wanted
_CACHE_SIZE = 20_000


class TaskSource(Protocol):
    """The Batch reads the reconciler needs (shared/batch.AzureBatch)."""

    def task_change_pages(self, job_id: str, since: datetime | None,
                          token: str | None = None) -> Iterable[tuple[list[TaskSnapshot], str | None]]: ...

    def task_origin(self, job_id: str, task_id: str) -> TaskOrigin | None: ...


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
    # Listed tasks per job not completed yet: a job with any cannot be retired (shared/job_lifecycle.py).
    unfinished_by_job: dict[str, int] = field(default_factory=dict)
    listed_jobs: set[str] = field(default_factory=set)   # jobs this run listed to their last page
    listing_complete: bool = False                        # False: out of time, the next tick resumes
    seen_active: int = 0         # listed tasks now active / running: a lower bound for the scaler
    seen_running: int = 0
    newly_succeeded: int = 0
    newly_failed: int = 0
    # Failed for the infrastructure's reasons (task_columns.retry_reason): the row stays unfinished and the
    # tick adds the task again (shared/recovery.py).
    to_resubmit: list[TaskSnapshot] = field(default_factory=list)
    # Files whose row moved to succeeded in this run (the tick checks their MP3 is the newest version's).
    succeeded: list[LedgerRow] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.write_failures == 0


@dataclass(frozen=True)
class Listing:
    """One listing of changed tasks across our jobs, possibly spread over several ticks."""

    since: datetime | None              # the stateTransitionTime filter (None: every task)
    started: datetime                   # when it began: the watermark never moves past it
    done: tuple[str, ...] = ()          # jobs listed to the end
    job: str | None = None              # the job it stopped in, and that job's next page
    token: str | None = None
    newest: datetime | None = None      # the newest transition seen so far

    def after_page(self, job_id: str, token: str | None, newest: datetime | None) -> Listing:
        best = max((t for t in (self.newest, newest) if t is not None), default=None)
        return replace(self, job=job_id, token=token, newest=best)

    def job_done(self, job_id: str) -> Listing:
        return replace(self, done=(*self.done, job_id), job=None, token=None)

    def mark(self) -> datetime | None:
        """The watermark a complete listing earns: its newest transition, but not past its start."""
        return min(self.newest, self.started) if self.newest is not None else None

    def columns(self) -> dict[str, object]:
        return {Col.LISTING_STARTED: self.started, Col.LISTING_SINCE: self.since,
                Col.LISTING_DONE: ",".join(self.done), Col.LISTING_JOB: self.job, Col.LISTING_TOKEN: self.token,
                Col.LISTING_NEWEST: self.newest}

    @classmethod
    def read(cls, entity: Mapping[str, object]) -> Listing | None:
        started = entity.get(Col.LISTING_STARTED)
        if not isinstance(started, datetime):
            return None
        moment = lambda col: entity.get(col) if isinstance(entity.get(col), datetime) else None  # noqa: E731
        text = lambda col: str(entity[col]) if entity.get(col) else None  # noqa: E731
        return cls(since=moment(Col.LISTING_SINCE), started=started,
                   done=tuple(j for j in (text(Col.LISTING_DONE) or "").split(",") if j),
                   job=text(Col.LISTING_JOB), token=text(Col.LISTING_TOKEN), newest=moment(Col.LISTING_NEWEST))


class Reconciler:
    """Built once per worker process (it keeps a small cache of rows it knows are current)."""

    def __init__(self, *, tasks: TaskSource, ledger: Ledger, overlap: timedelta, failure_log: FailureLog | None,
                 output_url: Callable[[str], str] | None, clock: Callable[[], datetime]) -> None:
        self._tasks = tasks
        self._ledger = ledger
        self._job_id = ledger.job_id
        self._overlap = overlap
        self._failure_log = failure_log
        self._output_url = output_url
        self._clock = clock
        # task id -> TaskStateTime its row is known to reflect (written or read by this process).
        # Rows only move forward, so "known at least this new" stays true whatever other ticks do.
        self._known: OrderedDict[str, datetime] = OrderedDict()
        self._known_lock = threading.Lock()

    def watermark(self) -> datetime | None:
        row = self._ledger.read_watermark()
        return row.entity.get(Col.WATERMARK) if row else None

    def run(self, job_ids: list[str], time_left: Callable[[], float] = lambda: 1.0) -> ReconcileResult:
        """Reconcile the changes of these jobs since the watermark, resuming an unfinished listing; stop between
        pages when `time_left()` is not positive."""
        result = ReconcileResult()
        mark_row = self._ledger.read_watermark()
        watermark = mark_row.entity.get(Col.WATERMARK) if mark_row else None
        result.watermark_before = result.watermark_after = watermark
        saved = Listing.read(mark_row.entity) if mark_row else None
        listing = saved or Listing(since=watermark - self._overlap if watermark else None, started=self._clock())
        for index, job_id in enumerate([j for j in job_ids if j not in listing.done]):
            if index and time_left() <= 0:
                return self._finish(result, mark_row, listing)
            token = listing.token if job_id == listing.job else None
            for page, next_token in self._tasks.task_change_pages(job_id, listing.since, token):
                newest = self._page(page, result, catch_up=watermark is None)
                listing = listing.after_page(job_id, next_token, newest)
                if not result.complete:
                    return self._finish(result, mark_row, None, abandon=saved is not None)
                if next_token is not None and time_left() <= 0:
                    return self._finish(result, mark_row, listing)
            listing = listing.job_done(job_id)
            result.listed_jobs.add(job_id)
        result.listing_complete = True
        return self._finish(result, mark_row, None, mark=listing.mark(), abandon=saved is not None)

    def _page(self, page: list[TaskSnapshot], result: ReconcileResult, *, catch_up: bool) -> datetime | None:
        """Apply one listed page; the newest transition in it."""
        newest: datetime | None = None
        # Keyed by task id: a task that changes while the listing pages can appear twice, and one
        # transaction may not touch a row twice. The later transition wins.
        chunk: dict[str, TaskSnapshot] = {}
        for task in page:
            result.listed += 1
            if task.state != "completed":
                result.unfinished_by_job[task.job_id] = result.unfinished_by_job.get(task.job_id, 0) + 1
            if task.state == "active":
                result.seen_active += 1
            elif task.state in ("running", "preparing"):
                result.seen_running += 1
            if task.state_transition_time and (newest is None or task.state_transition_time > newest):
                newest = task.state_transition_time
            seen = chunk.get(task.task_id)
            if seen is None or later(task, seen):
                chunk[task.task_id] = task
        if chunk:
            self._apply(list(chunk.values()), result, catch_up=catch_up)
        return newest

    def _finish(self, result: ReconcileResult, mark_row: StoredRow | None, unfinished: Listing | None, *,
                mark: datetime | None = None, abandon: bool = False) -> ReconcileResult:
        """Save where an unfinished listing stopped, or move the watermark after a complete one (or drop a
        saved listing whose writes failed: the next run starts it over)."""
        watermark = result.watermark_before
        moves = result.complete and mark is not None and (watermark is None or ms(mark) > ms(watermark))
        new_mark = ms(mark) if moves else watermark
        if unfinished is not None or moves or abandon:
            if self._ledger.write_watermark(new_mark, mark_row.etag if mark_row else None, self._clock(),
                                            unfinished.columns() if unfinished is not None else None):
                result.watermark_after = new_mark
            else:  # another tick wrote it first: its listing or watermark is at least as far along as ours
                event(_log, logging.INFO, "reconcile.watermark_conflict")
        level = logging.INFO if result.listed or result.write_failures else logging.DEBUG
        event(_log, level, "reconcile.done", listed=result.listed, updated=result.updated, adopted=result.adopted,
              unchanged=result.unchanged, write_failures=result.write_failures, transactions=result.transactions,
              listing="complete" if result.listing_complete else "resumes next tick" if unfinished else "abandoned",
              watermark=result.watermark_after.isoformat() if result.watermark_after else None)
        return result

    def rows_of(self, tasks: Sequence[TaskSnapshot]) -> dict[str, LedgerRow]:
        """The current rows of these tasks (for a re-add, which writes conditionally on them)."""
        return {key: LedgerRow.from_entity(row.entity, row.etag)
                for key, row in self._ledger.read_rows([t.task_id for t in tasks]).items()}

    def repair(self, tasks: Sequence[TaskSnapshot]) -> ReconcileResult:
        """Bring these tasks' rows up to date now, whatever this process believes it wrote before."""
        self.forget(t.task_id for t in tasks)
        result = ReconcileResult()
        self._apply(tasks, result)
        return result

    def _apply(self, tasks: Sequence[TaskSnapshot], result: ReconcileResult, *, catch_up: bool = False) -> None:
        """Bring the rows of `tasks` up to date: conditional writes, ≤100 per transaction, one retry.

        `catch_up` (no watermark yet: the whole job is listed) reads the ledger partition in pages
        instead of row by row."""
        pending = [t for t in tasks if not self._known_current(t)]
        result.unchanged += len(tasks) - len(pending)
        for _attempt in (1, 2):
            if not pending:
                return
            rows = self._ledger.read_rows([t.task_id for t in pending],
                                          scan=catch_up and len(pending) >= _SCAN_MIN_ROWS)
            writes: list[tuple[TaskSnapshot, RowWrite]] = []
            for task in pending:
                write = self._write_for(task, rows.get(task.task_id), result)
                if write is None:
                    self._remember(task)
                    result.unchanged += 1
                else:
                    writes.append((task, write))
            failed: list[TaskSnapshot] = []
            # A row going final brings its completion event's outbox marker along; Ledger.commit splits a batch
            # that no longer fits one transaction (each row stays with its marker).
            for start in range(0, len(writes), MAX_TRANSACTION):
                batch = writes[start:start + MAX_TRANSACTION]
                error = self._ledger.commit([w for _, w in batch])
                if error is None:
                    result.transactions += 1
                    for task, write in batch:
                        self._count_write(write, rows.get(task.task_id), result)
                        self._remember(task)
                else:
                    # 412 (another tick updated a row) or 404 (row deleted since the read): re-read and redo.
                    result.errors.append(f"transaction: {error}")
                    event(_log, logging.WARNING, "reconcile.transaction_failed", code=error, rows=len(batch))
                    failed.extend(task for task, _ in batch)
            pending = failed
        result.write_failures += len(pending)

    def _write_for(self, task: TaskSnapshot, row: StoredRow | None, result: ReconcileResult) -> RowWrite | None:
        if row is None:
            return self._adoption(task, result)
        known_time = row.entity.get(Col.TASK_STATE_TIME)
        if known_time is not None and task.state_transition_time is not None \
                and ms(known_time) > ms(task.state_transition_time):
            return None  # the row already reflects a newer transition (an overlapping tick)
        if ledger_state(task) is State.FAILED and row.entity.get(Col.STATE) == State.FAILED.value \
                and same(known_time, task.state_transition_time):
            return None  # final and recorded: do not re-read the log
        if retry_reason(task) is not None and (row.entity.get(Col.RESUBMITS) or 0) < RESUBMIT_LIMIT \
                and row.entity.get(Col.STATE) not in FINAL_STATES:
            result.to_resubmit.append(task)
            return None
        fields = self._fields(task, row.entity.get(Col.OUTPUT_NAME))
        if all(same(row.entity.get(k), v) for k, v in fields.items()):
            return None
        fields[Col.UPDATED_AT] = self._clock()
        return RowWrite("update", {"PartitionKey": self._job_id, "RowKey": task.task_id, **fields}, row.etag)

    def _adoption(self, task: TaskSnapshot, result: ReconcileResult) -> RowWrite | None:
        origin = self._tasks.task_origin(task.job_id, task.task_id)
        if origin is None:
            result.vanished += 1
            return None
        now = self._clock()
        entity: dict[str, Any] = {
            "PartitionKey": self._job_id,
            "RowKey": task.task_id,
            Col.TASK_ID: task.task_id,
            Col.JOB_ID: task.job_id or self._job_id,
            Col.INPUT_NAME: printable_name(origin.input_name) if origin.input_name else None,
            Col.INPUT_CONTAINER: origin.input_container,
            Col.INPUT_ETAG: origin.input_etag,
            Col.OUTPUT_NAME: origin.output_name,
            Col.SUBMITTED_AT: origin.creation_time or task.creation_time,
            Col.ADOPTED_AT: now,
            Col.UPDATED_AT: now,
            **self._fields(task, origin.output_name),
        }
        entity = {k: v for k, v in entity.items() if v is not None}
        event(_log, logging.WARNING, "reconcile.adopted", task_id=task.task_id,
              blob_name=entity.get(Col.INPUT_NAME), state=entity.get(Col.STATE))
        # Upsert-merge: if the trigger's insert lands first, our newer task state still applies; if ours
        # lands first, the trigger's insert-only write finds the row and leaves it alone.
        return RowWrite("upsert", entity)

    def _fields(self, task: TaskSnapshot, output_name: str | None) -> dict[str, Any]:
        state = ledger_state(task)
        output_url = None
        if state is State.SUCCEEDED and output_name and self._output_url is not None:
            output_url = redact_url(self._output_url(output_name))
        ffmpeg_error = None
        if state is State.FAILED and self._failure_log is not None:
            ffmpeg_error = self._failure_log.error_line(task.task_id)
        return task_fields(task, output_url=output_url, ffmpeg_error=ffmpeg_error)

    @staticmethod
    def _count_write(write: RowWrite, row: StoredRow | None, result: ReconcileResult) -> None:
        if write.kind == "upsert":
            result.adopted += 1
        else:
            result.updated += 1
        before = row.entity.get(Col.STATE) if row else None
        after = write.entity.get(Col.STATE)
        if after != before:
            if after == State.SUCCEEDED.value:
                result.newly_succeeded += 1
                result.succeeded.append(LedgerRow.from_entity({**(row.entity if row else {}), **write.entity}))
            elif after == State.FAILED.value:
                result.newly_failed += 1

    # -- cache --------------------------------------------------------------------------------------
    def _known_current(self, task: TaskSnapshot) -> bool:
        if task.state_transition_time is None:
            return False
        with self._known_lock:
            known = self._known.get(task.task_id)
        return known is not None and known >= ms(task.state_transition_time)

    def _remember(self, task: TaskSnapshot) -> None:
        if task.state_transition_time is None:
            return
        with self._known_lock:
            self._known[task.task_id] = ms(task.state_transition_time)
            self._known.move_to_end(task.task_id)
            while len(self._known) > _CACHE_SIZE:
                self._known.popitem(last=False)

    def forget(self, task_ids: Iterable[str]) -> None:
        with self._known_lock:
            for tid in task_ids:
                self._known.pop(tid, None)
