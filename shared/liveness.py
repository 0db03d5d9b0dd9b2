"""The liveness audit: no file stays `queued` or `running` because Batch forgot its task.

The reconciler only sees tasks Batch lists; a task deleted by an operator, by a job delete, or by Batch's
retention leaves its row unfinished forever. Each tick the audit reads one page of unfinished rows (a
server-side filtered page, resumed next tick from the saved cursor, so a tick's cost does not grow with
the ledger) and looks up at most `LOOKUPS_PER_TICK` of their tasks:
- task gone: the file is re-added (shared/recovery.py), or its row ends `failed` with what happened;
- task completed but the row is behind (a lost write): the row is repaired now, including a re-add when
  the failure was the infrastructure's;
- task still waiting or running: Batch bounds it (maxWallClockTime, retries); an input deleted meanwhile
  fails the task with BlobNotFound, which the reconciler records.
Rows younger than `MIN_AGE` are left alone: the trigger adds the task before it writes the row, but an
operator's resubmit briefly has a row without a task.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .batch_types import TaskLookup
from .ledger import Ledger, LedgerRow
from .log import event, get_logger
from .reconcile import Reconciler
from .recovery import Redo, Resubmitter
from .task_columns import retry_reason

_log = get_logger("liveness")

LOOKUPS_PER_TICK = 25
MIN_AGE = timedelta(minutes=2)
VANISHED = "task vanished from Batch (its job or the task was deleted)"


@dataclass
class AuditResult:
    checked: int = 0
    vanished: int = 0
    repaired: int = 0
    resubmitted: int = 0
    ended: int = 0
    cursor: str | None = None     # where the next tick resumes (JSON of the table's continuation token)
    succeeded: list[LedgerRow] = field(default_factory=list)  # rows the repairs moved to succeeded


class LivenessAudit:
    def __init__(self, *, ledger: Ledger, tasks: TaskLookup, reconciler: Reconciler, resubmitter: Resubmitter,
                 clock: Callable[[], datetime], min_age: timedelta = MIN_AGE) -> None:
        self._min_age = min_age
        self._ledger = ledger
        self._tasks = tasks
        self._reconciler = reconciler
        self._resubmitter = resubmitter
        self._clock = clock

    def run(self, cursor: str | None) -> AuditResult:
        result = AuditResult()
        rows, next_cursor = self._ledger.unfinished_page(json.loads(cursor) if cursor else None, LOOKUPS_PER_TICK)
        young = self._clock() - self._min_age
        for row in rows:
            if row.recorded_at is None or row.recorded_at > young:
                continue
            result.checked += 1
            task_id = row.task_id or row.row_key
            task = self._tasks.task(row.task_job, task_id)
            if task is None:
                result.vanished += 1
                self._count(result, self._resubmitter.redo(row, VANISHED, task_exists=False))
            elif task.state == "completed":
                repair = self._reconciler.repair([task])
                result.repaired += repair.updated + repair.adopted
                result.succeeded.extend(repair.succeeded)
                for failed in repair.to_resubmit:
                    self._count(result, self._resubmitter.redo(row, retry_reason(failed) or "", task_exists=True))
        result.cursor = json.dumps(next_cursor) if next_cursor else None
        if result.checked:
            event(_log, logging.INFO, "liveness.audit", checked=result.checked, vanished=result.vanished,
                  repaired=result.repaired, resubmitted=result.resubmitted, ended=result.ended,
                  more=result.cursor is not None)
        return result

    @staticmethod
    def _count(result: AuditResult, outcome: Redo) -> None:
        if outcome is Redo.RESUBMITTED:
            result.resubmitted += 1
        elif outcome is Redo.ENDED:
            result.ended += 1
