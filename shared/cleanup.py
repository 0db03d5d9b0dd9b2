"""Completed-task hygiene: the standing job must not accumulate every task ever run.

Tasks completed longer ago than the retention are deleted from the job, but only after their ledger
row is read back as final (succeeded/failed) for that very completion (its TaskStateTime): the row
read back is the proof it reached the ledger, no watermark needed. A task whose row is missing or
behind is reconciled (adopted/updated) first and deleted on a later run. No row is ever lost to a
delete.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from azure.core.exceptions import HttpResponseError

from .batch_types import TaskSnapshot
from .ledger import Ledger
from .log import event, get_logger
from .reconcile import Reconciler
from .task_columns import row_final_for

_log = get_logger("cleanup")

_DELETE_WORKERS = 8


class CompletedTasks(Protocol):
    """The Batch calls cleanup needs (shared/batch.AzureBatch)."""

    def list_completed_before(self, cutoff: datetime, limit: int) -> list[TaskSnapshot]: ...

    def delete_task(self, task_id: str) -> bool: ...


@dataclass
class HygieneResult:
    candidates: int = 0
    deleted: int = 0
    repaired: int = 0
    kept: int = 0  # row not final yet (repair pending / failed)


class CompletedTaskCleanup:
    def __init__(self, *, tasks: CompletedTasks, ledger: Ledger, reconciler: Reconciler,
                 clock: Callable[[], datetime]) -> None:
        self._tasks = tasks
        self._ledger = ledger
        self._reconciler = reconciler
        self._clock = clock

    def run(self, *, retention: timedelta, limit: int = 500,
            time_left: Callable[[], float] = lambda: 1.0) -> HygieneResult:
        """Delete up to `limit` tasks completed more than `retention` ago whose row is final; no new delete
        starts once `time_left()` is not positive (the rest waits for the next run)."""
        result = HygieneResult()
        candidates = self._tasks.list_completed_before(self._clock() - retention, limit)
        result.candidates = len(candidates)
        if not candidates:
            return result
        rows = self._ledger.read_rows([t.task_id for t in candidates])
        final, behind = [], []
        for task in candidates:
            row = rows.get(task.task_id)
            (final if row_final_for(row.entity if row else None, task) else behind).append(task)
        if behind:
            # A completed task whose row is missing or behind (a deleted row, a lost write): repair it now;
            # it is deleted on a later run, after the repaired row is read back.
            repair = self._reconciler.repair(behind)
            result.repaired = repair.updated + repair.adopted
            result.kept = len(behind)
        with ThreadPoolExecutor(max_workers=_DELETE_WORKERS) as pool:
            result.deleted = sum(1 for ok in pool.map(lambda task: time_left() > 0 and self._delete(task), final)
                                 if ok)
        event(_log, logging.INFO, "reconcile.cleaned", candidates=result.candidates, deleted=result.deleted,
              repaired=result.repaired, kept=result.kept)
        return result

    def _delete(self, task: TaskSnapshot) -> bool:
        try:
            ok = self._tasks.delete_task(task.task_id)
        except HttpResponseError as exc:
            event(_log, logging.WARNING, "reconcile.delete_failed", task_id=task.task_id, status=exc.status_code)
            return False
        self._reconciler.forget([task.task_id])
        return ok
