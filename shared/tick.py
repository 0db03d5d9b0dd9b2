"""The timer tick: a short list of phases, each isolated from the others' failures.

1. status_load   the status row (scaling memory, maintenance cadence, sweep and audit positions)
2. jobs          our period jobs (one List Jobs call); a completed one is deleted (shared/job_lifecycle.py)
3. reconcile     changed tasks -> ledger rows, at most RECONCILE_BUDGET_SECONDS (a listing resumes next tick)
4. recovery      re-add tasks that failed for the infrastructure's reasons; submit uploads whose trigger
                 failed (shared/recovery.py) - before the counts, so this tick's scaling sees them
5. task_counts   the jobs' counts (unknown counts: no scaling this tick - unknown work is not "idle")
6. scaling       rounds of read pool -> decide -> act
7. maintenance   within what is left of TICK_BUDGET_SECONDS: output containers, a few pages of the
                 missed-upload sweep pass (resumed from the status row), drained jobs deleted whole
8. audit         one bounded page of unfinished rows checked against Batch (shared/liveness.py)
   newest        files that succeeded this tick: the MP3 left must be the newest upload's, else the newest
                 version runs again (shared/newest_wins.py)
   events        completion events: one page of the ledger's outbox published to the sinks (shared/publish.py)
9. status_save   the status row, assembled from what this tick saw

Bounded: every phase before scaling is sized by the work that changed since the last tick, never by the
container, the ledger or the job's age, and reconcile also by its own time budget; maintenance and the
audit come after scaling, read a bounded number of pages or items, and start nothing new once the tick
budget is spent - what is left is recorded (`Deferred` in the status row) and resumes from saved
positions on the next tick.

A failing phase is logged and recorded in the status row but does not stop the later ones - above
all, a ledger outage never stops the pool from waking or parking. The entry point raises `TickFailed`
when any phase failed, so the host records a failed invocation.

Singleton-safe: the Functions host runs a timer function on one instance at a time (a storage lock),
and within this process a non-blocking lock turns an overlapping tick into a no-op. Beyond that
nothing depends on ticks being exclusive or on time: every decision is made from fresh reads,
ledger/status/watermark writes are ETag-conditional and monotonic, and Batch refuses conflicting pool
operations (409) - so a past-due tick, or two ticks overlapping across instances, do no harm.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .batch_types import TimerBatch
from .batch_types import TaskCounts
from .clock import utc_now
from .job_lifecycle import JobHealth, Retirement, check_jobs, drained_candidates, retire
from .job_periods import JobPeriods
from .liveness import AuditResult, LivenessAudit
from .newest_wins import NewestResult, NewestWins
from .log import event, get_logger
from .pool_scaler import BatchPoolControl, ScalingOutcome, scale_pool
from .publish import EventPublisher, PublishResult
from .reconcile import ReconcileResult, Reconciler
from .recovery import PendingResult, PendingUploads, Redo, Resubmitter
from .scaling import ScalingPolicy, WorkSnapshot
from .settings import TimerSettings
from .status import Increments, LoadedStatus, StatusRecord, StatusStore, after_tick, with_healing
from .sweep import Sweeper, SweepResult
from .task_columns import retry_reason

_log = get_logger("timer")


class TickFailed(RuntimeError):
    """At least one phase of the tick failed (details in the log and the status row)."""


@dataclass
class TickReport:
    skipped: bool = False
    reconcile: ReconcileResult | None = None
    sweep: SweepResult | None = None
    retirement: Retirement | None = None
    counts: TaskCounts | None = None
    scaling: ScalingOutcome | None = None
    job: JobHealth | None = None
    resubmitted: int = 0
    pending: PendingResult | None = None
    audit: AuditResult | None = None
    newest: NewestResult | None = None
    events: PublishResult | None = None
    status_written: bool = False
    deferred: list[str] = field(default_factory=list)   # maintenance left for the next tick (budget spent)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class TimerService:
    settings: TimerSettings
    policy: ScalingPolicy
    monitor: TimerBatch
    reconciler: Reconciler
    status: StatusStore
    sweeper: Sweeper
    jobs: JobPeriods
    resubmitter: Resubmitter
    pending: PendingUploads
    audit: LivenessAudit
    newest: NewestWins
    pool_id: str
    ensure_containers: Callable[[], None]
    clock: Callable[[], datetime] = utc_now
    sleep: Callable[[float], None] = time.sleep
    _lock: threading.Lock = field(default_factory=threading.Lock)
    events: EventPublisher | None = None      # completion events (None: EVENTS_SINK=none)

    def tick(self) -> TickReport:
        if not self._lock.acquire(blocking=False):
            event(_log, logging.WARNING, "timer.overlap_skipped")
            return TickReport(skipped=True)
        try:
            return self._tick()
        finally:
            self._lock.release()

    def _tick(self) -> TickReport:
        started = time.monotonic()
        now = self.clock()
        report = TickReport()

        loaded = _guard(report, "status_load", self.status.load) or LoadedStatus(StatusRecord(), None)
        record = loaded.record
        deadline = started + self.settings.tick_budget.total_seconds()

        def time_left() -> float:
            return deadline - time.monotonic()

        current_job = self.jobs.job_for(now, now)
        report.job = _guard(report, "jobs", lambda: check_jobs(self.monitor))
        # Without the job list there is nothing to read tasks from; an unknown state is not "idle" either.
        live = report.job.live_ids if report.job is not None else None
        drained: list[str] = []
        if report.job is not None:
            # Counts before the listing: what completed before this read, this tick's reconcile will see.
            drained = _guard(report, "jobs", lambda: drained_candidates(
                self.monitor, report.job, now=now, retention=self.settings.completed_task_retention,
                current_job=current_job)) or []
        if live is not None:
            reconcile_end = started + self.settings.reconcile_budget.total_seconds()
            report.reconcile = _guard(report, "reconcile", lambda: self.reconciler.run(
                live, time_left=lambda: reconcile_end - time.monotonic()))
        # Before the counts: tasks added again here are seen by this tick's scaling (woken in the same tick).
        if report.reconcile is not None and report.reconcile.to_resubmit:
            _guard(report, "recovery", lambda: self._resubmit_failed(report))
        if record.PendingSince is not None:
            report.pending = _guard(report, "pending", self.pending.retry)
        control = BatchPoolControl(self.monitor)
        counts_read = _guard(report, "task_counts", lambda: (self.monitor.task_counts(live),)) \
            if live is not None else None
        if counts_read is not None:
            report.counts = counts_read[0]
            work = _work(report.counts, report.reconcile)
            report.scaling = _guard(report, "scaling", lambda: scale_pool(
                control, work, record.memory, self.policy, self.clock, self.sleep))

        # After scaling: maintenance never delays a wake or a park, and stops at the budget.
        self._maintenance(report, record, now, time_left)
        if drained:
            report.retirement = _guard(report, "retire_jobs", lambda: retire(
                self.monitor, drained, report.reconcile, time_left))
        if time_left() > 0:
            report.audit = _guard(report, "audit", lambda: self.audit.run(record.AuditCursor))
        else:
            report.deferred.append("audit")
        succeeded = (report.reconcile.succeeded if report.reconcile else []) + \
            (report.audit.succeeded if report.audit else [])
        if succeeded:
            report.newest = _guard(report, "newest", lambda: self.newest.run(succeeded))
        if self.events is not None:
            # Last before the status row: rows this tick made final are published in the same tick.
            report.events = _guard(report, "events", self.events.run)

        new_record = after_tick(record, errors=report.errors, reconcile=report.reconcile, counts=report.counts,
                                scaling=report.scaling, sweep=report.sweep, nodes=control.nodes,
                                deferred=report.deferred, pool_id=self.pool_id, job_id=current_job, now=now)
        new_record = with_healing(new_record, job=report.job, retirement=report.retirement, pending=report.pending,
                                  audit=report.audit, now=now)
        increments = Increments(report.reconcile.newly_succeeded, report.reconcile.newly_failed) \
            if report.reconcile else Increments()
        report.status_written = bool(_guard(report, "status_save",
                                            lambda: self.status.save(loaded, new_record, increments, now)))
        report.seconds = round(time.monotonic() - started, 3)
        self._log(report, new_record)
        return report

    def _resubmit_failed(self, report: TickReport) -> None:
        """Tasks the reconciler held back (failed for the infrastructure's reasons): add them again."""
        assert report.reconcile is not None
        rows = self.reconciler.rows_of(report.reconcile.to_resubmit)
        for task in report.reconcile.to_resubmit:
            row = rows.get(task.task_id)
            if row is not None and self.resubmitter.redo(row, retry_reason(task) or "", task_exists=True) \
                    is Redo.RESUBMITTED:
                report.resubmitted += 1

    def _maintenance(self, report: TickReport, record: StatusRecord, now: datetime,
                     time_left: Callable[[], float]) -> None:
        position = record.sweep_position
        if not (position.in_pass or _due(record.LastSweepAt, now, self.settings.sweep_interval)):
            return
        if time_left() <= 0:
            report.deferred.append("sweep")
            return
        _guard(report, "containers", self.ensure_containers)
        report.sweep = _guard(report, "sweep", lambda: self.sweeper.run(position, time_left=time_left))
        if report.sweep is not None and report.sweep.error:
            _record_error(report, "sweep", report.sweep.error)

    @staticmethod
    def _log(report: TickReport, record: StatusRecord) -> None:
        event(_log, logging.INFO if not report.errors else logging.ERROR, "timer.tick",
              seconds=report.seconds, listed=report.reconcile.listed if report.reconcile else None,
              ledger_writes=report.reconcile.transactions if report.reconcile else None,
              active=report.counts.active if report.counts else None,
              running=report.counts.running if report.counts else None,
              decision=record.LastDecision,
              actions=record.LastActions if report.scaling and report.scaling.executed else None,
              jobs_retired=",".join(report.retirement.retired) if report.retirement else None,
              jobs_waiting=",".join(report.retirement.waiting) if report.retirement else None,
              status_written=report.status_written, deferred=",".join(report.deferred) or None,
              errors="; ".join(report.errors) or None)


def run_tick(service: TimerService, timer: Any) -> TickReport:
    """One timer invocation (`timer` is an azure.functions.TimerRequest); raises TickFailed on a failed phase."""
    if getattr(timer, "past_due", False):
        # Harmless: the tick reads current state; a late tick is just a tick.
        event(_log, logging.INFO, "timer.past_due")
    report = service.tick()
    if report.errors:
        raise TickFailed("; ".join(report.errors))
    return report


def _work(counts: TaskCounts | None, rec: ReconcileResult | None) -> WorkSnapshot:
    # Both are lower bounds of the truth (counts may lag; the listing only shows recent changes).
    active = max(counts.active if counts else 0, rec.seen_active if rec else 0)
    running = max(counts.running if counts else 0, rec.seen_running if rec else 0)
    return WorkSnapshot(active=active, running=running)


def _due(last: datetime | None, now: datetime, interval: timedelta) -> bool:
    return last is None or now - last >= interval


def _guard(report: TickReport, phase: str, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - one failing phase must not stop the others
        _record_error(report, phase, f"{type(exc).__name__}: {exc}")
        return None


def _record_error(report: TickReport, phase: str, error: str) -> None:
    text = f"{phase}: {error}"[:500]
    report.errors.append(text)
    event(_log, logging.ERROR, "timer.phase_failed", phase=phase, error=text)
