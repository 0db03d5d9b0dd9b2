"""The service's status row: one entity an operator reads in Storage Explorer (partition `~status`,
row `summary`) - pool size and state, task counts, ledger totals, the last scaling decision, pool
errors, when the timer last ran - plus the scaling controller's small memory (shared/scaling.py).
`after_tick` assembles the new row from what a tick saw; the ledger module stores it.

Written only when something in it changed, or when the last write is older than the heartbeat,
so an idle service costs no table write per tick (`LastTickAt` is therefore "at most one heartbeat
old", and `LastChangeAt` says when the content last changed). Writes replace the entity
conditionally on the ETag read at the start of the tick; on a conflict (an overlapping tick wrote
first) the row is re-read and the counters this tick adds are applied to the fresh values once.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any

from .batch_types import NodeView, TaskCounts
from .job_lifecycle import JobHealth, Retirement
from .liveness import AuditResult
from .ledger import Ledger
from .log import event, get_logger
from .pool_scaler import ScalingOutcome, describe
from .reconcile import ReconcileResult
from .recovery import PendingResult
from .scaling import ScalingMemory
from .sweep import SweepPosition, SweepResult

_log = get_logger("status")

_MAX_TEXT = 4000  # a table string property holds 64 KiB; keep the row glanceable
_STARTING_STATES = frozenset({"creating", "starting", "waitingforstarttask", "rebooting", "reimaging"})
_UNUSABLE_STATES = frozenset({"starttaskfailed", "unusable", "offline", "unknown"})


@dataclass(frozen=True)
class StatusRecord:
    """Every column of the status row (None = column absent)."""

    PoolId: str | None = None
    JobId: str | None = None
    PoolExists: bool | None = None
    PoolAllocationState: str | None = None
    PoolAutoscaleEnabled: bool | None = None
    PoolCurrentNodes: int | None = None
    PoolTargetNodes: int | None = None
    NodesIdle: int | None = None
    NodesRunning: int | None = None
    NodesStarting: int | None = None
    NodesUnusable: int | None = None
    NodesLeaving: int | None = None
    TasksActive: int | None = None       # queued in Batch (incl. awaiting a retry)
    TasksRunning: int | None = None
    TasksCompletedInJob: int | None = None  # still in our jobs (a drained job is deleted whole)
    LedgerSucceeded: int = 0             # rows the reconciler moved to succeeded, cumulative
    LedgerFailed: int = 0
    NodesNeeded: int | None = None
    LastDecision: str | None = None
    LastActions: str | None = None
    LastActionAt: datetime | None = None
    PoolErrors: str | None = None
    AutoscaleResult: str | None = None   # the formula's last evaluation, e.g. "$TargetDedicatedNodes=2;..."
    LastTickError: str | None = None
    Watermark: datetime | None = None
    IdleSince: datetime | None = None
    LastPoolChange: datetime | None = None
    LastAutoscaleEnable: datetime | None = None
    ReplacementWindowStart: datetime | None = None
    ReplacementsInWindow: int = 0
    LastSweepAt: datetime | None = None      # when the last complete sweep pass ended
    SweepWatermark: datetime | None = None   # that pass's cutoff: older blobs were looked at
    SweepMarker: str | None = None           # the pass in progress resumes at this List Blobs marker
    SweepPassCutoff: datetime | None = None  # the pass in progress: its start minus SWEEP_MIN_AGE_SECONDS
    Deferred: str | None = None              # maintenance the last tick left for the next (out of time)
    JobState: str | None = None          # our jobs as Batch listed them: "<job id>:<state>, ..." ("none")
    JobHealing: str | None = None        # the last thing the tick did about a job's health, if anything
    JobsRetired: str | None = None       # the last drained jobs deleted, and when
    PendingSince: datetime | None = None  # set by a trigger that failed: markers wait in `~pending`
    AuditCursor: str | None = None       # where the liveness audit resumes
    LastChangeAt: datetime | None = None
    LastTickAt: datetime | None = None

    @property
    def sweep_position(self) -> SweepPosition:
        return SweepPosition(marker=self.SweepMarker, pass_cutoff=self.SweepPassCutoff,
                             covered_before=self.SweepWatermark)

    @property
    def memory(self) -> ScalingMemory:
        return ScalingMemory(idle_since=self.IdleSince, last_pool_change=self.LastPoolChange,
                             last_autoscale_enable=self.LastAutoscaleEnable,
                             replacement_window_start=self.ReplacementWindowStart,
                             replacements_in_window=self.ReplacementsInWindow)

    def with_memory(self, memory: ScalingMemory) -> StatusRecord:
        return replace(self, IdleSince=memory.idle_since, LastPoolChange=memory.last_pool_change,
                       LastAutoscaleEnable=memory.last_autoscale_enable,
                       ReplacementWindowStart=memory.replacement_window_start,
                       ReplacementsInWindow=memory.replacements_in_window)

    def content(self) -> dict[str, Any]:
        """Columns that count as a change (everything but the tick/change stamps)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("LastTickAt", "LastChangeAt") and getattr(self, f.name) is not None}

    def columns(self) -> dict[str, Any]:
        entity: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str):
                value = value[:_MAX_TEXT]
            if value is not None:
                entity[f.name] = value
        return entity

    @classmethod
    def from_entity(cls, entity: dict[str, Any]) -> StatusRecord:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in entity.items() if k in known}
        return cls(**values)


@dataclass(frozen=True)
class LoadedStatus:
    record: StatusRecord
    etag: str | None  # None: no row yet


@dataclass(frozen=True)
class Increments:
    succeeded: int = 0
    failed: int = 0


class StatusStore:
    def __init__(self, ledger: Ledger, *, heartbeat: timedelta) -> None:
        self._ledger = ledger
        self._heartbeat = heartbeat

    def load(self) -> LoadedStatus:
        row = self._ledger.read_status()
        if row is None:
            return LoadedStatus(StatusRecord(), None)
        return LoadedStatus(StatusRecord.from_entity(row.entity), row.etag)

    def save(self, loaded: LoadedStatus, new: StatusRecord, increments: Increments, now: datetime) -> bool:
        """Write `new` (+ counter increments) if it differs from what was loaded or the heartbeat is due.

        `new` is derived from `loaded.record` (it carries the loaded counters); True when written."""
        new = _add(new, increments)
        changed = new.content() != loaded.record.content()
        last_tick = loaded.record.LastTickAt
        heartbeat_due = last_tick is None or now - last_tick >= self._heartbeat
        if not changed and not heartbeat_due and loaded.etag is not None:
            return False
        new = replace(new, LastTickAt=now, LastChangeAt=now if changed else loaded.record.LastChangeAt)
        if self._write(new, loaded.etag):
            return True
        # Conflict: another tick wrote since our read. Re-read, keep its counters plus ours, write once more.
        fresh = self.load()
        merged = replace(new, LedgerSucceeded=fresh.record.LedgerSucceeded + increments.succeeded,
                         LedgerFailed=fresh.record.LedgerFailed + increments.failed,
                         PendingSince=_newer_flag(fresh.record.PendingSince, loaded.record.PendingSince,
                                                  new.PendingSince))
        return self._write(merged, fresh.etag)

    def _write(self, record: StatusRecord, etag: str | None) -> bool:
        if self._ledger.write_status(record.columns(), etag):
            return True
        event(_log, logging.INFO, "status.write_conflict")
        return False


def _newer_flag(fresh: datetime | None, loaded: datetime | None, ours: datetime | None) -> datetime | None:
    """A trigger that failed after this tick read the status row set the flag anew: keep it for the next tick."""
    if fresh is not None and (loaded is None or fresh > loaded):
        return fresh
    return ours


def _add(record: StatusRecord, inc: Increments) -> StatusRecord:
    if not inc.succeeded and not inc.failed:
        return record
    return replace(record, LedgerSucceeded=record.LedgerSucceeded + inc.succeeded,
                   LedgerFailed=record.LedgerFailed + inc.failed)


def errors_text(errors: list[str]) -> str | None:
    return "; ".join(errors)[:_MAX_TEXT] if errors else None


def after_tick(old: StatusRecord, *, errors: list[str], reconcile: ReconcileResult | None, counts: TaskCounts | None,
               scaling: ScalingOutcome | None, sweep: SweepResult | None, nodes: tuple[NodeView, ...],
               deferred: list[str], pool_id: str, job_id: str, now: datetime) -> StatusRecord:
    """The status row as a tick leaves it: what it read and did, on top of the row it loaded."""
    r = replace(old, PoolId=pool_id, JobId=job_id, LastTickError=errors_text(errors),
                Deferred=",".join(deferred) or None)
    if reconcile is not None:
        r = replace(r, Watermark=reconcile.watermark_after)
    if counts is not None:
        r = replace(r, TasksActive=counts.active, TasksRunning=counts.running, TasksCompletedInJob=counts.completed)
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
                event(_log, logging.WARNING, "pool.errors", pool_id=pool_id, errors="; ".join(errors))
    if sweep is not None:
        p = sweep.position
        r = replace(r, SweepMarker=p.marker, SweepPassCutoff=p.pass_cutoff, SweepWatermark=p.covered_before)
        if sweep.pass_completed:
            r = replace(r, LastSweepAt=now)
    return r


def with_healing(r: StatusRecord, *, job: JobHealth | None, retirement: Retirement | None,
                 pending: PendingResult | None, audit: AuditResult | None, now: datetime) -> StatusRecord:
    """The self-healing part of the status row: the jobs' states and the last ones deleted, pending uploads,
    the audit's place."""
    if job is not None:
        r = replace(r, JobState=job.summary,
                    JobHealing=f"{now:%Y-%m-%d %H:%M:%S}Z {job.action}" if job.action else r.JobHealing)
    if retirement is not None and retirement.retired:
        r = replace(r, JobsRetired=f"{now:%Y-%m-%d %H:%M:%S}Z {', '.join(retirement.retired)}")
    if pending is not None and pending.all_handled:
        r = replace(r, PendingSince=None)
    if audit is not None:
        r = replace(r, AuditCursor=audit.cursor)
    return r
