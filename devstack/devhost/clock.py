"""Time sources for the timer trigger: the wall clock, and a manual clock tests advance."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Current time, timezone-aware (UTC)."""

    def sleep_until(self, deadline: datetime, stop: threading.Event) -> bool:
        """Block until `deadline` or until `stop` is set; True when the deadline was reached."""


class SystemClock:
    # Re-check at least this often so a changed wall clock (suspend/resume) is noticed.
    _MAX_NAP = 1.0

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def sleep_until(self, deadline: datetime, stop: threading.Event) -> bool:
        while not stop.is_set():
            remaining = (deadline - self.now()).total_seconds()
            if remaining <= 0:
                return True
            stop.wait(min(remaining, self._MAX_NAP))
        return False


class ManualClock:
    """A clock that only moves when told to; `sleepers` lets a test wait until a timer is parked."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start time")
        self._now = start
        self._cond = threading.Condition()
        self._sleepers = 0

    def now(self) -> datetime:
        with self._cond:
            return self._now

    def advance(self, delta: timedelta | float) -> datetime:
        with self._cond:
            self._now += delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
            self._cond.notify_all()
            return self._now

    @property
    def sleepers(self) -> int:
        with self._cond:
            return self._sleepers

    def wait_for_sleepers(self, count: int, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._sleepers >= count, timeout)

    def sleep_until(self, deadline: datetime, stop: threading.Event) -> bool:
        with self._cond:
            self._sleepers += 1
            self._cond.notify_all()
            try:
                while self._now < deadline:
                    if stop.is_set():
                        return False
                    # Short waits so a stop set without notifying the condition is still seen.
                    self._cond.wait(0.05)
                return not stop.is_set()
            finally:
                self._sleepers -= 1
                self._cond.notify_all()
