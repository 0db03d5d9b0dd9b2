"""Timer trigger listener: schedule, run_on_startup, use_monitor status blob, one run at a time.

Follows TimerListener (Azure/azure-webjobs-sdk-extensions): on start, a monitored
timer reads `azure-webjobs-hosts/timers/{hostId}/{functionId}/status`, and if an
occurrence was missed while the host was down it runs at once with IsPastDue=true;
otherwise `run_on_startup` runs it at once. After each run the status becomes
{Last: run time, Next: next occurrence, LastUpdated}. The next wait starts only
after the run returns, so a run that outlasts its interval delays the next tick
(which then fires immediately, once) instead of overlapping it.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import datetime

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient

from .bindings import InvocationContext, timer_argument
from .clock import Clock
from .discovery import DiscoveredFunction
from .invoker import invoke
from .logs import get_logger
from .schedule import NcrontabSchedule, ScheduleStatus, check_past_due, status_after_invocation

log = get_logger("timer")


class ScheduleStatusStore:
    """StorageScheduleMonitor's blob: `timers/{hostId}/{timerName}/status` holding ScheduleStatus JSON."""

    def __init__(self, hosts_container: ContainerClient, host_id: str) -> None:
        self._container = hosts_container
        self._host_id = host_id

    def blob_name(self, function_id: str) -> str:
        return f"timers/{self._host_id}/{function_id}/status"

    def get(self, function_id: str) -> ScheduleStatus | None:
        try:
            raw = self._container.get_blob_client(self.blob_name(function_id)).download_blob().readall()
        except ResourceNotFoundError:
            return None
        try:
            return ScheduleStatus.from_json(json.loads(raw))
        except (ValueError, TypeError):  # GetSafeStatusAsync: unreadable status counts as none
            log.warning("ignoring unreadable timer status for %s", function_id, extra={"event": "timer.bad_status"})
            return None

    def put(self, function_id: str, status: ScheduleStatus) -> None:
        body = json.dumps(status.to_json(), separators=(",", ":"))
        self._container.get_blob_client(self.blob_name(function_id)).upload_blob(body, overwrite=True)


@dataclass(frozen=True)
class TimerFunction:
    function: DiscoveredFunction
    schedule: NcrontabSchedule
    run_on_startup: bool
    use_monitor: bool

    @property
    def name(self) -> str:
        return self.function.name


class TimerListener:
    def __init__(self, timer: TimerFunction, store: ScheduleStatusStore, clock: Clock) -> None:
        self._timer = timer
        self._store = store if timer.use_monitor else None
        self._clock = clock
        self._stop = threading.Event()
        self._abandoned = threading.Event()
        self._invocation_lock = threading.Lock()   # singleton: one run at a time
        self._status: ScheduleStatus | None = None
        self.invocations = 0
        self._thread = threading.Thread(target=self._run, name=f"devhost-timer-{timer.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        """Stop scheduling new runs (a running one continues)."""
        self._stop.set()

    def stop(self, grace: float) -> bool:
        """Stop scheduling; wait up to `grace` s for a running invocation. False if it was abandoned."""
        self._stop.set()
        self._thread.join(timeout=max(grace, 0.0))
        if self._thread.is_alive():
            self._abandoned.set()  # its status is not written: the run counts as missed after restart
            log.warning("abandoned running timer %s at shutdown", self._timer.name,
                        extra={"event": "timer.abandoned", "function": self._timer.name})
            return False
        return True

    def _run(self) -> None:
        try:
            self._startup()
            while not self._stop.is_set():
                assert self._status is not None
                if not self._clock.sleep_until(self._status.next, self._stop):
                    return
                self._invoke(self._clock.now())
        except Exception:
            log.exception("timer %s stopped after an internal error", self._timer.name,
                          extra={"event": "timer.error", "function": self._timer.name})

    def _startup(self) -> None:
        timer, now = self._timer, self._clock.now()
        past_due = False
        if self._store is not None:
            check = check_past_due(now, timer.schedule, self._store.get(timer.function.function_id))
            if check.status_changed:
                self._store.put(timer.function.function_id, check.status)
            self._status, past_due = check.status, check.is_past_due
        if self._status is None:
            self._status = ScheduleStatus(last=None, next=timer.schedule.next_after(now), last_updated=None)
        upcoming = ", ".join(t.isoformat() for t in timer.schedule.occurrences(now, 3))
        log.info("timer %s schedule %r (%s); next occurrences: %s", timer.name, timer.schedule.expression,
                 timer.schedule.zone, upcoming,
                 extra={"event": "timer.scheduled", "function": timer.name, "next": self._status.next.isoformat(),
                        "use_monitor": timer.use_monitor, "run_on_startup": timer.run_on_startup})
        if past_due:
            log.info("timer %s is past due (missed %s)", timer.name, self._status.next.isoformat(),
                     extra={"event": "timer.past_due", "function": timer.name})
            self._invoke(now, past_due=True)
        elif timer.run_on_startup:
            self._invoke(now, run_on_startup=True)

    def _invoke(self, invocation_time: datetime, past_due: bool = False, run_on_startup: bool = False) -> None:
        timer = self._timer
        with self._invocation_lock:
            if self._stop.is_set():
                return
            assert self._status is not None
            # The function sees the status as it was before this run (TimerInfo.ScheduleStatus), if monitored.
            status_json = self._status.to_json() if self._store is not None else None
            reason = "IsPastDue" if past_due else "RunOnStartup" if run_on_startup else "Timer fired"
            fields = {"scheduled_for": self._status.next.isoformat()}

            def build(invocation_id: str) -> dict:
                args = {timer.function.trigger_param: timer_argument(past_due, status_json)}
                if timer.function.wants_context:
                    args["context"] = InvocationContext(timer.function, invocation_id)
                return args

            invoke(timer.function, build, reason=f"{reason} at {invocation_time.isoformat()}", **fields)
            self.invocations += 1
            if self._abandoned.is_set():
                return
            self._status = status_after_invocation(timer.schedule, self._status, invocation_time,
                                                   unscheduled=past_due or run_on_startup)
            if self._store is not None:
                self._store.put(timer.function.function_id, self._status)
