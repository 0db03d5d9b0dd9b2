"""NCRONTAB schedules and the timer's schedule monitor (past-due detection).

Schedule: six fields `{second} {minute} {hour} {day} {month} {day-of-week}`
(functions-bindings-timer docs), evaluated by croniter with seconds first. NCrontab
requires BOTH day-of-month and day-of-week to match when both are restricted, so
croniter runs with `day_or=False` (classic cron would OR them). Zone: UTC, or the
`WEBSITE_TIME_ZONE` app setting (an IANA name, as on Linux plans).

Past-due logic is a transcription of ScheduleMonitor.CheckPastDueAsync and the
status update in TimerListener.InvokeJobFunction (Azure/azure-webjobs-sdk-extensions,
src/WebJobs.Extensions/Extensions/Timers/Scheduling/ScheduleMonitor.cs and
Listener/TimerListener.cs).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from .errors import DevHostError

# .NET default(DateTime): what the host writes for "never" in ScheduleStatus.
NEVER_TEXT = "0001-01-01T00:00:00"
_TIMESPAN = re.compile(r"^\d+(\.\d+)?:\d{2}:\d{2}$|^\d+:\d{2}$")


def timer_zone(setting: str | None) -> tzinfo:
    if not setting:
        return timezone.utc
    try:
        return ZoneInfo(setting)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise DevHostError(f"WEBSITE_TIME_ZONE={setting!r} is not an IANA time zone name "
                           f"(e.g. 'Europe/Berlin')") from exc


class NcrontabSchedule:
    def __init__(self, expression: str, zone: tzinfo = timezone.utc) -> None:
        text = " ".join(expression.split())
        if _TIMESPAN.match(text):
            raise DevHostError(f"schedule {expression!r}: TimeSpan schedules run only on App Service plans; "
                               f"use a six-field NCRONTAB expression")
        fields = text.split(" ")
        if len(fields) == 5:
            # NCrontab also accepts five fields (no seconds): fire at second 0.
            fields = ["0", *fields]
        if len(fields) != 6 or not croniter.is_valid(" ".join(fields), second_at_beginning=True):
            raise DevHostError(f"schedule {expression!r} is not a valid NCRONTAB expression "
                               f"('{{second}} {{minute}} {{hour}} {{day}} {{month}} {{day-of-week}}')")
        self.expression = text
        self._cron = " ".join(fields)
        self.zone = zone

    def next_after(self, moment: datetime) -> datetime:
        """First occurrence strictly after `moment` (like NCrontab's GetNextOccurrence), in UTC."""
        local = moment.astimezone(self.zone)
        it = croniter(self._cron, local, day_or=False, second_at_beginning=True)
        return it.get_next(datetime).astimezone(timezone.utc)

    def occurrences(self, after: datetime, count: int) -> list[datetime]:
        out: list[datetime] = []
        moment = after
        for _ in range(count):
            moment = self.next_after(moment)
            out.append(moment)
        return out

    def default_use_monitor(self, now: datetime) -> bool:
        # TimerTriggerAttribute: monitoring is on unless the schedule fires more than once a minute.
        first, second = self.occurrences(now, 2)
        return second - first >= timedelta(minutes=1)


@dataclass
class ScheduleStatus:
    last: datetime | None
    next: datetime
    last_updated: datetime | None

    def to_json(self) -> dict[str, str]:
        return {"Last": _fmt(self.last), "Next": _fmt(self.next), "LastUpdated": _fmt(self.last_updated)}

    @classmethod
    def from_json(cls, data: dict) -> ScheduleStatus:
        nxt = _parse(data.get("Next"))
        if nxt is None:
            raise ValueError("ScheduleStatus has no Next")
        return cls(last=_parse(data.get("Last")), next=nxt, last_updated=_parse(data.get("LastUpdated")))


def _fmt(moment: datetime | None) -> str:
    return NEVER_TEXT if moment is None else moment.astimezone(timezone.utc).isoformat()


def _parse(text: str | None) -> datetime | None:
    if not text or text.startswith("0001-01-01"):
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class PastDueCheck:
    past_due_by: timedelta
    status: ScheduleStatus
    status_changed: bool   # the caller must persist `status`

    @property
    def is_past_due(self) -> bool:
        return self.past_due_by > timedelta(0)


def check_past_due(now: datetime, schedule: NcrontabSchedule, last: ScheduleStatus | None) -> PastDueCheck:
    """ScheduleMonitor.CheckPastDueAsync: has an occurrence been missed since the status was written?"""
    if last is None:
        status = ScheduleStatus(last=None, next=schedule.next_after(now), last_updated=now)
        return PastDueCheck(timedelta(0), status, status_changed=True)
    status = ScheduleStatus(last.last, last.next, last.last_updated)
    changed = False
    if status.last is not None:
        expected, updated = schedule.next_after(status.last), status.last
    elif status.last_updated is not None:
        expected, updated = schedule.next_after(status.last_updated), status.last_updated
    else:
        expected, updated = schedule.next_after(now), now
    if status.next != expected:
        # The schedule changed since the status was written: don't count that as past due.
        if now > expected:
            expected, updated = schedule.next_after(now), now
        status = ScheduleStatus(last=None, next=expected, last_updated=updated)
        changed = True
    past_due_by = now - status.next if now > status.next else timedelta(0)
    return PastDueCheck(past_due_by, status, changed)


def status_after_invocation(schedule: NcrontabSchedule, status: ScheduleStatus, invocation_time: datetime,
                            unscheduled: bool) -> ScheduleStatus:
    """TimerListener.InvokeJobFunction: a run that fired a little early counts as the scheduled one."""
    adjusted = invocation_time
    if not unscheduled and status.next > invocation_time:
        adjusted = status.next
    return ScheduleStatus(last=adjusted, next=schedule.next_after(adjusted), last_updated=adjusted)
