"""The timer tick: reconcile the ledger, sweep for missed uploads, scale the pool, publish status.

Order and failure isolation:
1. reconcile (changed tasks -> ledger), 2. maintenance when due (missed-upload sweep, completed-task
cleanup), 3. job task counts, 4. scaling rounds, 5. the status row. A failing phase is logged and
recorded in the status row but does not stop the later ones - above all, a ledger outage never stops
the pool from waking or parking. If the task counts cannot be read the scaler does nothing this tick
(unknown work must not look like "idle"). The tick raises `TickFailed` at the end when any phase
failed, so the host records a failed invocation.

Singleton-safe: the Functions host runs a timer function on one instance at a time (a storage
lock), and within this process a non-blocking lock turns an overlapping tick into a no-op. Beyond
that nothing depends on ticks being exclusive or on time: every decision is made from fresh reads,
ledger/status/watermark writes are ETag-conditional and monotonic, and Batch refuses conflicting pool
operations (409) - so a past-due tick, or two ticks overlapping across instances, do no harm.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from . import pool_spec, runtime
from .access import utc_now
from .batch_monitor import BatchMonitor, NodeView, PoolActionRefused, PoolView
from .gateway import TaskCounts
from .log import event, get_logger
from .reconcile import BlobFailureLog, HygieneResult, ReconcileResult, Reconciler
from .scaling import (
    Action,
    Decision,
    DisableAutoscale,
    EnableAutoscale,
    RemoveNodes,
    Resize,
    ScalingMemory,
    ScalingPolicy,
    StopResize,
    WorkSnapshot,
    decide,
    remember,
)
from .status import Increments, LoadedStatus, StatusRecord, StatusStore, errors_text
from .sweep import Sweeper, SweepResult
from .settings import TimerSettings

_log = get_logger("timer")

MAX_SCALING_ROUNDS = 3          # stop-resize -> re-read -> resize fits in one tick
SETTLE_SECONDS = 1.0            # pause before re-reading a pool whose resize was just stopped
_STARTING_STATES = frozenset({"creating", "starting", "waitingforstarttask", "rebooting", "reimaging"})
_UNUSABLE_STATES = frozenset({"starttaskfailed", "unusable", "offline", "unknown"})


class TickFailed(RuntimeError):
    """At least one phase of the tick failed (details in the log and the status row)."""


# --- scaling rounds -----------------------------------------------------------------------------

class PoolControl(Protocol):
    def read_pool(self) -> PoolView | None: ...

    def execute(self, action: Action) -> None: ...


class MonitorControl:
    """PoolControl over the BatchMonitor; remembers the nodes of the last read for the status row."""

    def __init__(self, monitor: BatchMonitor) -> None:
        self._monitor = monitor
        self.nodes: tuple[NodeView, ...] = ()

    def read_pool(self) -> PoolView | None:
        view = self._monitor.get_pool()
        if view is None:
            self.nodes = ()
            return None
        view, self.nodes = self._monitor.with_nodes(view)
        return view

    def execute(self, action: Action) -> None:
        if isinstance(action, DisableAutoscale):
            self._monitor.disable_autoscale()
        elif isinstance(action, EnableAutoscale):
            self._monitor.enable_autoscale()
        elif isinstance(action, Resize):
            self._monitor.resize(action.target)
        elif isinstance(action, StopResize):
            self._monitor.stop_resize()
        elif isinstance(action, RemoveNodes):
            self._monitor.remove_nodes(action.node_ids)
        else:  # pragma: no cover - exhaustive over scaling.Action
            raise TypeError(f"unknown action {action!r}")


@dataclass
class ScalingOutcome:
    decisions: list[Decision] = field(default_factory=list)
    executed: list[Action] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    memory: ScalingMemory = field(default_factory=ScalingMemory)
    pool: PoolView | None = None


def describe(action: Action) -> str:
    if isinstance(action, Resize):
        return f"resize({action.target})"
    if isinstance(action, RemoveNodes):
        return f"remove_nodes({len(action.node_ids)})"
    return action.kind


def scale_pool(control: PoolControl, work: WorkSnapshot, memory: ScalingMemory, policy: ScalingPolicy,
               clock: Callable[[], datetime], sleep: Callable[[float], None] = time.sleep,
               max_rounds: int = MAX_SCALING_ROUNDS) -> ScalingOutcome:
    """Read the pool, decide, act; re-read and decide again after a transitional step (stop-resize).

    Actions of one decision run in order and stop at the first refusal (e.g. 409 while a resize
    is still being accepted after disabling autoscale): the next tick decides from fresh state."""
    outcome = ScalingOutcome(memory=memory)
    for round_no in range(max_rounds):
        if round_no:
            sleep(SETTLE_SECONDS)
        view = control.read_pool()
        outcome.pool = view
        decision = decide(view.snapshot if view else None, work, outcome.memory, policy, clock())
        outcome.decisions.append(decision)
        outcome.memory = decision.memory
        refused = False
        for action in decision.actions:
            try:
                control.execute(action)
            except PoolActionRefused as exc:
                outcome.refused.append(f"{exc.operation}: {exc.code or exc.status}")
                refused = True
                break
            outcome.executed.append(action)
            outcome.memory = remember(outcome.memory, action, clock())
        if decision.actions:
            event(_log, logging.INFO, "scaling.decision", reason=decision.reason.value, need=decision.need,
                  actions=",".join(describe(a) for a in decision.actions), refused=refused or None,
                  autoscale=view.snapshot.autoscale_enabled if view else None,
                  current=view.snapshot.current_nodes if view else None,
                  target=view.snapshot.target_nodes if view else None)
        if refused or not decision.transitional:
            break
    if outcome.executed:
        outcome.pool = control.read_pool()  # the status row shows the pool as the actions left it
    return outcome


# --- the tick -----------------------------------------------------------------------------------

@dataclass
class TickReport:
    skipped: bool = False
    reconcile: ReconcileResult | None = None
    sweep: SweepResult | None = None
    hygiene: HygieneResult | None = None
    counts: TaskCounts | None = None
    scaling: ScalingOutcome | None = None
    status_written: bool = False
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class TimerService:
    settings: TimerSettings
    policy: ScalingPolicy
    monitor: BatchMonitor
    reconciler: Reconciler
    status: StatusStore
    sweeper: Sweeper
    pool_id: str
    job_id: str
    ensure_containers: Callable[[], None]
    clock: Callable[[], datetime] = utc_now
    sleep: Callable[[float], None] = time.sleep
    _lock: threading.Lock = field(default_factory=threading.Lock)

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
        report.reconcile = _guard(report, "reconcile", self.reconciler.run)

        record = loaded.record
        if _maintenance_due(record.LastSweepAt, now, self.settings.sweep_interval):
            _guard(report, "containers", self.ensure_containers)
            report.sweep = _guard(report, "sweep", lambda: self.sweeper.run(record.SweepWatermark))
            report.hygiene = _guard(report, "cleanup", lambda: self.reconciler.clean_completed(
                retention=self.settings.completed_task_retention))

        counts_read = _guard(report, "task_counts", lambda: (self.monitor.task_counts(),))
        control = MonitorControl(self.monitor)
        if counts_read is not None:
            report.counts = counts_read[0]
            work = _work(report.counts, report.reconcile)
            report.scaling = _guard(report, "scaling", lambda: scale_pool(
                control, work, record.memory, self.policy, self.clock, self.sleep))

        new_record = self._record(record, report, control.nodes, now)
        increments = Increments(report.reconcile.newly_succeeded, report.reconcile.newly_failed) \
            if report.reconcile else Increments()
        report.status_written = bool(_guard(report, "status_save",
                                            lambda: self.status.save(loaded, new_record, increments, now)))
        report.seconds = round(time.monotonic() - started, 3)
        event(_log, logging.INFO if not report.errors else logging.ERROR, "timer.tick",
              seconds=report.seconds, listed=report.reconcile.listed if report.reconcile else None,
              ledger_writes=report.reconcile.transactions if report.reconcile else None,
              active=report.counts.active if report.counts else None,
              running=report.counts.running if report.counts else None,
              decision=new_record.LastDecision, actions=new_record.LastActions if report.scaling and
              report.scaling.executed else None, status_written=report.status_written,
              errors="; ".join(report.errors) or None)
        return report

    def _record(self, old: StatusRecord, report: TickReport, nodes: tuple[NodeView, ...],
                now: datetime) -> StatusRecord:
        r = replace(old, PoolId=self.pool_id, JobId=self.job_id, LastTickError=errors_text(report.errors))
        if report.reconcile is not None:
            r = replace(r, Watermark=report.reconcile.watermark_after)
        if report.counts is not None:
            r = replace(r, TasksActive=report.counts.active, TasksRunning=report.counts.running,
                        TasksCompletedInJob=report.counts.completed)
        scaling = report.scaling
        if scaling is not None:
            r = r.with_memory(scaling.memory)
            view = scaling.pool
            last = scaling.decisions[-1] if scaling.decisions else None
            r = replace(r, NodesNeeded=last.need if last else None,
                        LastDecision=">".join(d.reason.value for d in scaling.decisions) or None)
            if scaling.executed or scaling.refused:
                r = replace(r, LastActions=",".join(describe(a) for a in scaling.executed)
                            + (f" refused: {'; '.join(scaling.refused)}" if scaling.refused else ""),
                            LastActionAt=now)
            if view is None:
                r = replace(r, PoolExists=False, PoolAllocationState=None, PoolAutoscaleEnabled=None,
                            AutoscaleResult=None, PoolCurrentNodes=None, PoolTargetNodes=None, PoolErrors=None)
            else:
                s = view.snapshot
                errors = [f"{e.source} {e.code}: {e.message}" if e.message else f"{e.source} {e.code}"
                          for e in view.errors]
                r = replace(r, PoolExists=True, PoolAllocationState=s.allocation.value,
                            AutoscaleResult=view.autoscale_results if s.autoscale_enabled else None,
                            PoolAutoscaleEnabled=s.autoscale_enabled, PoolCurrentNodes=s.current_nodes,
                            PoolTargetNodes=s.target_nodes, PoolErrors=errors_text(errors + scaling.refused),
                            NodesIdle=sum(n.state == "idle" for n in nodes),
                            NodesRunning=sum(n.state == "running" for n in nodes),
                            NodesStarting=sum(n.state in _STARTING_STATES for n in nodes),
                            NodesUnusable=sum(n.state in _UNUSABLE_STATES for n in nodes),
                            NodesLeaving=sum(n.state == "leavingpool" for n in nodes))
                if errors:
                    event(_log, logging.WARNING, "pool.errors", pool_id=self.pool_id, errors="; ".join(errors))
        if report.sweep is not None and report.sweep.cutoff is not None:
            r = replace(r, LastSweepAt=now, SweepWatermark=report.sweep.cutoff)
        return r


def _work(counts: TaskCounts | None, rec: ReconcileResult | None) -> WorkSnapshot:
    # Both are lower bounds of the truth (counts may lag; the listing only shows recent changes).
    active = max(counts.active if counts else 0, rec.seen_active if rec else 0)
    running = max(counts.running if counts else 0, rec.seen_running if rec else 0)
    return WorkSnapshot(active=active, running=running)


def _maintenance_due(last: datetime | None, now: datetime, interval: timedelta) -> bool:
    return last is None or now - last >= interval


def _guard(report: TickReport, phase: str, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - one failing phase must not stop the others
        text = f"{phase}: {type(exc).__name__}: {exc}"
        report.errors.append(text[:500])
        event(_log, logging.ERROR, "timer.phase_failed", phase=phase, error=text[:500])
        return None


# --- composition --------------------------------------------------------------------------------

def build_timer_service(service: runtime.Service, settings: TimerSettings, *,
                        clock: Callable[[], datetime] = utc_now,
                        sleep: Callable[[float], None] = time.sleep) -> TimerService:
    """Everything on the submit side's clients (one BatchClient, one TableClient, one BlobServiceClient)."""
    app = service.settings
    clients = service.clients
    monitor = BatchMonitor(
        clients.batch, pool_id=app.pool_id, job_id=app.job_id, priority=app.node_priority,
        autoscale_formula=pool_spec.autoscale_formula(app.task_slots_per_node, app.max_nodes, app.node_priority),
        autoscale_interval=timedelta(minutes=app.autoscale_interval_minutes))
    reconciler = Reconciler(
        tasks=monitor, table=clients.ledger_table, job_id=app.job_id, overlap=settings.reconcile_overlap,
        failure_log=BlobFailureLog(clients.blob_service, app.logs_container),
        output_url=lambda name: clients.blob_service.get_blob_client(app.output_container, name).url,
        clock=clock)
    sweeper = Sweeper(blob_service=clients.blob_service, input_container=app.input_container,
                      table=clients.ledger_table, job_id=app.job_id, submit=service.submitter.handle,
                      clock=clock, min_age=settings.sweep_min_age)
    policy = ScalingPolicy(max_nodes=app.max_nodes, idle_grace=settings.idle_grace,
                           autoscale_handback=settings.autoscale_handback)
    return TimerService(settings=settings, policy=policy, monitor=monitor, reconciler=reconciler,
                        status=StatusStore(clients.ledger_table, heartbeat=settings.status_heartbeat),
                        sweeper=sweeper, pool_id=app.pool_id, job_id=app.job_id,
                        ensure_containers=service.ensure_output_containers, clock=clock, sleep=sleep)


_lock = threading.Lock()
_timer_service: TimerService | None = None


def get_timer_service() -> TimerService:
    global _timer_service
    if _timer_service is None:
        with _lock:
            if _timer_service is None:
                _timer_service = build_timer_service(runtime.get_service(), TimerSettings.from_env(os.environ))
    return _timer_service


def set_timer_service(timer_service: TimerService | None) -> None:
    """Install a prebuilt timer service (tests, the dev host) or clear it so the next tick rebuilds."""
    global _timer_service
    with _lock:
        _timer_service = timer_service


def on_timer(timer: Any) -> TickReport:
    """Entry point for function_app.py's timer trigger (`timer` is an azure.functions.TimerRequest)."""
    if getattr(timer, "past_due", False):
        # Harmless: the tick reads current state; a late tick is just a tick.
        event(_log, logging.INFO, "timer.past_due")
    report = get_timer_service().tick()
    if report.errors:
        raise TickFailed("; ".join(report.errors))
    return report
