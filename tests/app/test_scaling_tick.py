"""The tick's orchestration (shared/tick.py) with its parts faked: phase isolation, work lower bounds,
maintenance cadence, the in-process overlap guard, TickFailed."""
from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest

from shared.batch_types import PoolView
from shared.batch_types import TaskCounts
from shared.batch_types import JobView
from shared.job_periods import JobPeriods
from shared.liveness import AuditResult
from shared.reconcile import ReconcileResult
from shared.recovery import PendingResult
from shared.scaling import Allocation, PoolSnapshot, ScalingPolicy
from shared.status import LoadedStatus, StatusRecord
from shared.sweep import SweepPosition, SweepResult
from shared.handlers import on_timer
from shared.runtime import set_timer_service
from shared.tick import TickFailed, TimerService
from shared.settings import TimerSettings

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
JOBS = JobPeriods("job", timedelta(hours=1))
CURRENT = JOBS.job_for(T0, T0)
SETTINGS = TimerSettings(idle_grace=timedelta(seconds=120), autoscale_handback=timedelta(seconds=300),
                         reconcile_overlap=timedelta(seconds=60), sweep_interval=timedelta(minutes=10),
                         sweep_min_age=timedelta(minutes=5), completed_task_retention=timedelta(hours=1),
                         status_heartbeat=timedelta(minutes=5), sweep_page_size=5000, sweep_pages_per_tick=2,
                         tick_budget=timedelta(seconds=120), reconcile_budget=timedelta(seconds=30))


@dataclass
class FakeMonitor:
    counts: TaskCounts | Exception | None = field(default_factory=lambda: TaskCounts(0, 0, 0, 0, 0))
    snapshot: PoolSnapshot | None = field(default_factory=lambda: PoolSnapshot(Allocation.STEADY, True, 0, 0))
    calls: list[str] = field(default_factory=list)
    jobs: list[JobView] = field(default_factory=lambda: [JobView(CURRENT, "active", T0 + timedelta(hours=1))])
    counted: list[list[str]] = field(default_factory=list)

    def our_jobs(self):
        return list(self.jobs)

    def delete_job(self, job_id):
        self.calls.append(f"delete_job({job_id})")

    def task_counts(self, job_ids):
        self.counted.append(list(job_ids))
        if isinstance(self.counts, Exception):
            raise self.counts
        return self.counts

    def get_pool(self):
        return PoolView(self.snapshot, (), "$TargetDedicatedNodes=0") if self.snapshot else None

    def with_nodes(self, view):
        return view, ()

    def disable_autoscale(self):
        self.calls.append("disable_autoscale")
        self.snapshot = PoolSnapshot(self.snapshot.allocation, False, self.snapshot.current_nodes,
                                     self.snapshot.target_nodes)

    def resize(self, target):
        self.calls.append(f"resize({target})")
        self.snapshot = PoolSnapshot(Allocation.RESIZING, False, self.snapshot.current_nodes, target)

    def enable_autoscale(self):
        self.calls.append("enable_autoscale")

    def stop_resize(self):
        self.calls.append("stop_resize")

    def remove_nodes(self, ids):
        self.calls.append("remove_nodes")


@dataclass
class FakeReconciler:
    result: ReconcileResult | Exception = field(default_factory=ReconcileResult)

    job_ids: list = field(default_factory=list)

    def run(self, job_ids, time_left=lambda: 1.0):
        self.job_ids.append(list(job_ids))
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


@dataclass
class FakeStatus:
    record: StatusRecord = field(default_factory=StatusRecord)
    saved: list[StatusRecord] = field(default_factory=list)

    def load(self):
        return LoadedStatus(self.record, "etag" if self.saved else None)

    def save(self, loaded, new, increments, now):
        self.record = new
        self.saved.append(new)
        return True


@dataclass
class FakeSweeper:
    runs: list = field(default_factory=list)

    def run(self, position, *, time_left=lambda: 1.0):
        self.runs.append(position)
        return SweepResult(pass_completed=True, position=SweepPosition(covered_before=T0 - timedelta(minutes=5)))


@dataclass
class FakePending:
    def retry(self):
        return PendingResult()


@dataclass
class FakeAudit:
    cursors: list = field(default_factory=list)

    def run(self, cursor):
        self.cursors.append(cursor)
        return AuditResult(cursor="next")


def service(monitor=None, reconciler=None, status=None, sweeper=None, now=T0,
            settings=SETTINGS, audit=None) -> TimerService:
    return TimerService(settings=settings, policy=ScalingPolicy(max_nodes=4, idle_grace=SETTINGS.idle_grace,
                                                                autoscale_handback=SETTINGS.autoscale_handback),
                        monitor=monitor or FakeMonitor(), reconciler=reconciler or FakeReconciler(),
                        resubmitter=None, pending=FakePending(),
                        audit=audit or FakeAudit(), newest=None, status=status or FakeStatus(), sweeper=sweeper or FakeSweeper(), pool_id="pool",
                        jobs=JOBS, ensure_containers=lambda: None, clock=lambda: now, sleep=lambda s: None)


def test_a_ledger_outage_does_not_stop_the_wake():
    monitor = FakeMonitor(counts=TaskCounts(active=2, running=0, completed=0, succeeded=0, failed=0))
    report = service(monitor, FakeReconciler(RuntimeError("table down"))).tick()
    assert monitor.calls[:2] == ["disable_autoscale", "resize(2)"]
    assert any("reconcile" in e for e in report.errors)


def test_unknown_work_is_not_treated_as_idle():
    monitor = FakeMonitor(counts=RuntimeError("batch throttled"),
                          snapshot=PoolSnapshot(Allocation.STEADY, True, 2, 2))
    status = FakeStatus(StatusRecord(IdleSince=T0 - timedelta(hours=1), LastSweepAt=T0))
    report = service(monitor, status=status).tick()
    assert monitor.calls == [] and report.scaling is None
    assert "task_counts" in status.saved[-1].LastTickError


def test_the_reconcile_listing_lifts_stale_counts():
    monitor = FakeMonitor(counts=TaskCounts(0, 0, 0, 0, 0))  # counts lag behind a task the listing saw
    status = FakeStatus(StatusRecord(IdleSince=T0 - timedelta(hours=1), LastSweepAt=T0))
    service(monitor, FakeReconciler(ReconcileResult(listed=1, seen_active=1)), status).tick()
    assert monitor.calls == ["disable_autoscale", "resize(1)"]


def test_maintenance_runs_on_its_cadence_and_records_the_sweep():
    status, sweeper = FakeStatus(), FakeSweeper()
    service(status=status, sweeper=sweeper).tick()
    assert len(sweeper.runs) == 1
    assert status.record.LastSweepAt == T0 and status.record.SweepWatermark == T0 - timedelta(minutes=5)
    service(status=status, sweeper=sweeper, now=T0 + timedelta(minutes=9)).tick()
    assert len(sweeper.runs) == 1
    service(status=status, sweeper=sweeper, now=T0 + timedelta(minutes=10)).tick()
    assert sweeper.runs == [SweepPosition(), SweepPosition(covered_before=T0 - timedelta(minutes=5))]


def test_maintenance_runs_after_scaling():
    order = []
    monitor = FakeMonitor(counts=TaskCounts(active=2, running=0, completed=0, succeeded=0, failed=0))

    class OrderedSweeper(FakeSweeper):
        def run(self, position, *, time_left=lambda: 1.0):
            order.append(("sweep", list(monitor.calls)))
            return super().run(position)

    service(monitor, sweeper=OrderedSweeper()).tick()
    assert order == [("sweep", ["disable_autoscale", "resize(2)"])]


def test_a_spent_budget_defers_maintenance_and_the_audit_but_not_scaling():
    monitor = FakeMonitor(counts=TaskCounts(active=1, running=0, completed=0, succeeded=0, failed=0))
    status, sweeper, audit = FakeStatus(), FakeSweeper(), FakeAudit()
    spent = dataclasses.replace(SETTINGS, tick_budget=timedelta(0))
    report = service(monitor, status=status, sweeper=sweeper, settings=spent, audit=audit).tick()
    assert monitor.calls == ["disable_autoscale", "resize(1)"]
    assert sweeper.runs == [] and audit.cursors == []
    assert report.deferred == ["sweep", "audit"] and status.record.Deferred == "sweep,audit"
    assert report.errors == []
    # The next tick with time to spare does the deferred work.
    service(monitor, status=status, sweeper=sweeper, audit=audit,
            now=T0 + timedelta(minutes=1)).tick()
    assert len(sweeper.runs) == 1 and status.record.Deferred is None


def test_a_sweep_pass_in_progress_resumes_on_the_next_tick_from_its_marker():
    in_pass = SweepPosition(marker="page-3", pass_cutoff=T0 - timedelta(minutes=5))

    class PagingSweeper(FakeSweeper):
        def run(self, position, *, time_left=lambda: 1.0):
            self.runs.append(position)
            return SweepResult(pages=2, position=in_pass)

    status, sweeper = FakeStatus(), PagingSweeper()
    service(status=status, sweeper=sweeper).tick()
    assert status.record.SweepMarker == "page-3" and status.record.LastSweepAt is None
    service(status=status, sweeper=sweeper, now=T0 + timedelta(minutes=1)).tick()  # well before the interval
    assert sweeper.runs == [SweepPosition(), in_pass]


def test_a_failed_sweep_page_is_an_error_of_the_tick_and_keeps_the_position():
    stuck = SweepPosition(marker="page-1", pass_cutoff=T0)

    class FailingSweeper(FakeSweeper):
        def run(self, position, *, time_left=lambda: 1.0):
            return SweepResult(position=stuck, error="RuntimeError: Batch unavailable")

    status = FakeStatus()
    report = service(status=status, sweeper=FailingSweeper()).tick()
    assert report.errors == ["sweep: RuntimeError: Batch unavailable"]
    assert status.record.SweepMarker == "page-1"


def test_status_shows_the_pool_after_the_actions_and_the_decision():
    monitor = FakeMonitor(counts=TaskCounts(active=1, running=0, completed=0, succeeded=0, failed=0))
    status = FakeStatus(StatusRecord(LastSweepAt=T0))
    service(monitor, status=status).tick()
    record = status.record
    assert record.PoolTargetNodes == 1 and record.PoolAutoscaleEnabled is False
    assert record.LastDecision == "wake" and record.LastActions == "disable_autoscale,resize(1)"
    assert record.TasksActive == 1 and record.NodesNeeded == 1 and record.LastPoolChange == T0


def test_overlapping_tick_in_one_process_is_skipped():
    gate, release = threading.Event(), threading.Event()

    class SlowReconciler(FakeReconciler):
        def run(self, job_ids, time_left=lambda: 1.0):
            gate.set()
            release.wait(5)
            return ReconcileResult()

    svc = service(reconciler=SlowReconciler())
    first = threading.Thread(target=svc.tick)
    first.start()
    gate.wait(5)
    assert svc.tick().skipped
    release.set()
    first.join(5)


def test_on_timer_raises_when_a_phase_failed_so_the_host_records_it():
    set_timer_service(service(reconciler=FakeReconciler(RuntimeError("boom"))))
    try:
        with pytest.raises(TickFailed, match="reconcile"):
            on_timer(type("T", (), {"past_due": True})())
        set_timer_service(service())
        assert not on_timer(type("T", (), {"past_due": False})()).errors
    finally:
        set_timer_service(None)


def test_reconcile_and_counts_read_every_live_job_and_a_completed_one_is_deleted():
    old = JobView(JOBS.job_for(T0 - timedelta(hours=1), T0), "active", T0)
    done = JobView(JOBS.job_for(T0 - timedelta(minutes=90), T0), "completed", T0 - timedelta(minutes=30))
    monitor = FakeMonitor(jobs=[done, old, JobView(CURRENT, "active", T0 + timedelta(hours=1))])
    reconciler, status = FakeReconciler(), FakeStatus()
    report = service(monitor, reconciler, status).tick()
    assert reconciler.job_ids == [[old.job_id, CURRENT]] and monitor.counted[0] == [old.job_id, CURRENT]
    assert f"delete_job({done.job_id})" in monitor.calls and "deleted" in report.job.action
    assert status.record.JobId == CURRENT and f"{done.job_id}:completed" in status.record.JobState


def test_without_the_job_list_nothing_is_read_and_nothing_scaled():
    class Unlisted(FakeMonitor):
        def our_jobs(self):
            raise RuntimeError("Batch unreachable")

    monitor, reconciler = Unlisted(counts=TaskCounts(0, 0, 0, 0, 0)), FakeReconciler()
    status = FakeStatus(StatusRecord(IdleSince=T0 - timedelta(hours=1), LastSweepAt=T0))
    report = service(monitor, reconciler, status).tick()
    assert reconciler.job_ids == [] and monitor.counted == [] and report.scaling is None
    assert any(e.startswith("jobs:") for e in report.errors)
