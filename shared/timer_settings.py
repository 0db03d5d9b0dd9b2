"""Settings of the timer function (reconcile, scaling, sweep), read once and validated.

Kept apart from `settings.Settings` (the submit path's) so the blob trigger does not depend on
timer knobs; errors are the same `SettingsError`, naming the setting. TIMER_SCHEDULE itself is
resolved by the Functions host (`%TIMER_SCHEDULE%` in the decorator), not here.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from .settings import SettingsError

DEFAULT_TIMER_SCHEDULE = "0 */1 * * * *"


@dataclass(frozen=True)
class TimerSettings:
    idle_grace: timedelta             # no active/running task this long -> pool to zero
    autoscale_handback: timedelta     # manual pool unchanged this long -> autoscale re-enabled
    reconcile_overlap: timedelta      # re-list this far behind the watermark (listing lag, clock skew)
    sweep_interval: timedelta         # missed-upload sweep + completed-task cleanup cadence
    sweep_min_age: timedelta          # blobs younger than this are left to the trigger
    completed_task_retention: timedelta  # completed tasks stay in the job this long after their row is final
    status_heartbeat: timedelta       # status row rewritten at least this often even when nothing changed

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TimerSettings:
        def seconds(name: str, default: int, low: int, high: int) -> timedelta:
            raw = (env.get(name) or "").strip()
            if not raw:
                return timedelta(seconds=default)
            try:
                value = int(raw)
            except ValueError:
                raise SettingsError(name, f"must be an integer number of seconds, got {raw!r}") from None
            if not low <= value <= high:
                raise SettingsError(name, f"must be between {low} and {high} seconds, got {value}")
            return timedelta(seconds=value)

        day = 24 * 3600
        settings = cls(
            idle_grace=seconds("IDLE_GRACE_SECONDS", 120, 0, day),
            autoscale_handback=seconds("AUTOSCALE_HANDBACK_SECONDS", 300, 0, day),
            reconcile_overlap=seconds("RECONCILE_OVERLAP_SECONDS", 120, 0, 3600),
            sweep_interval=seconds("SWEEP_INTERVAL_SECONDS", 600, 60, 7 * day),
            sweep_min_age=seconds("SWEEP_MIN_AGE_SECONDS", 300, 0, day),
            completed_task_retention=seconds("COMPLETED_TASK_RETENTION_SECONDS", 3600, 0, 6 * day),
            status_heartbeat=seconds("STATUS_HEARTBEAT_SECONDS", 300, 0, day),
        )
        return settings
