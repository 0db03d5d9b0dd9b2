"""NCRONTAB evaluation and the schedule monitor's past-due rules (no storage, no sleeping)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from devstack.devhost.errors import DevHostError
from devstack.devhost.schedule import (NcrontabSchedule, ScheduleStatus, check_past_due, status_after_invocation,
                                       timer_zone)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


@pytest.mark.parametrize("expression, after, expected", [
    ("0 */1 * * * *", utc(2026, 1, 1, 0, 0, 30), [utc(2026, 1, 1, 0, 1), utc(2026, 1, 1, 0, 2)]),
    ("0 */1 * * * *", utc(2026, 1, 1, 0, 1), [utc(2026, 1, 1, 0, 2), utc(2026, 1, 1, 0, 3)]),   # strictly after
    ("*/15 * * * * *", utc(2026, 1, 1), [utc(2026, 1, 1, 0, 0, 15), utc(2026, 1, 1, 0, 0, 30)]),
    ("0 30 9 * * Mon", utc(2026, 1, 1), [utc(2026, 1, 5, 9, 30), utc(2026, 1, 12, 9, 30)]),
    ("0 0 9 * * 1-5", utc(2026, 1, 2, 10), [utc(2026, 1, 5, 9), utc(2026, 1, 6, 9)]),
    ("0 0 0 13 * Fri", utc(2026, 1, 1), [utc(2026, 2, 13), utc(2026, 3, 13)]),   # NCrontab ANDs the day fields
    ("*/5 * * * *", utc(2026, 1, 1, 0, 0, 1), [utc(2026, 1, 1, 0, 5), utc(2026, 1, 1, 0, 10)]),  # 5 fields
])
def test_next_occurrences(expression, after, expected):
    assert NcrontabSchedule(expression).occurrences(after, 2) == expected


def test_time_zone_setting():
    berlin = NcrontabSchedule("0 0 9 * * *", timer_zone("Europe/Berlin"))
    assert berlin.next_after(utc(2026, 7, 1)) == utc(2026, 7, 1, 7)       # CEST, UTC+2
    assert berlin.next_after(utc(2026, 1, 1)) == utc(2026, 1, 1, 8)       # CET, UTC+1
    assert isinstance(berlin.zone, ZoneInfo)
    with pytest.raises(DevHostError):
        timer_zone("Not/AZone")


@pytest.mark.parametrize("expression", ["", "* * *", "61 * * * * *", "0 0 25 * * *", "00:05:00", "bogus x y z a b"])
def test_invalid_schedules(expression):
    with pytest.raises(DevHostError):
        NcrontabSchedule(expression)


def test_default_use_monitor():
    now = utc(2026, 1, 1)
    assert NcrontabSchedule("0 */1 * * * *").default_use_monitor(now) is True
    assert NcrontabSchedule("*/30 * * * * *").default_use_monitor(now) is False


EVERY_MINUTE = NcrontabSchedule("0 */1 * * * *")


def test_first_start_writes_a_status_and_is_not_past_due():
    check = check_past_due(utc(2026, 1, 1, 0, 0, 30), EVERY_MINUTE, None)
    assert not check.is_past_due and check.status_changed
    assert check.status == ScheduleStatus(None, utc(2026, 1, 1, 0, 1), utc(2026, 1, 1, 0, 0, 30))


def test_missed_occurrence_is_past_due():
    status = ScheduleStatus(utc(2026, 1, 1, 0, 1), utc(2026, 1, 1, 0, 2), utc(2026, 1, 1, 0, 1))
    check = check_past_due(utc(2026, 1, 1, 0, 5, 10), EVERY_MINUTE, status)
    assert check.past_due_by == timedelta(minutes=3, seconds=10) and not check.status_changed


def test_restart_before_next_is_on_time():
    status = ScheduleStatus(utc(2026, 1, 1, 0, 1), utc(2026, 1, 1, 0, 2), utc(2026, 1, 1, 0, 1))
    assert not check_past_due(utc(2026, 1, 1, 0, 1, 59), EVERY_MINUTE, status).is_past_due


def test_changed_schedule_is_not_reported_past_due():
    # Written for an hourly schedule; the app now runs every five minutes and the old Next is long past.
    status = ScheduleStatus(utc(2026, 1, 1, 0), utc(2026, 1, 1, 1), utc(2026, 1, 1, 0))
    now = utc(2026, 1, 1, 3, 2)
    check = check_past_due(now, NcrontabSchedule("0 */5 * * * *"), status)
    assert not check.is_past_due and check.status_changed
    assert check.status == ScheduleStatus(None, utc(2026, 1, 1, 3, 5), now)


def test_status_after_invocation():
    status = ScheduleStatus(None, utc(2026, 1, 1, 0, 1), None)
    early = utc(2026, 1, 1, 0, 0, 59, 900000)   # fired a little early: counts as the 00:01 run
    assert status_after_invocation(EVERY_MINUTE, status, early, unscheduled=False) == ScheduleStatus(
        utc(2026, 1, 1, 0, 1), utc(2026, 1, 1, 0, 2), utc(2026, 1, 1, 0, 1))
    late = utc(2026, 1, 1, 0, 4, 30)
    assert status_after_invocation(EVERY_MINUTE, status, late, unscheduled=True).next == utc(2026, 1, 1, 0, 5)


def test_status_json_round_trip():
    status = ScheduleStatus(None, utc(2026, 1, 1, 0, 1), utc(2026, 1, 1))
    assert status.to_json() == {"Last": "0001-01-01T00:00:00", "Next": "2026-01-01T00:01:00+00:00",
                                "LastUpdated": "2026-01-01T00:00:00+00:00"}
    assert ScheduleStatus.from_json(status.to_json()) == status
    assert ScheduleStatus.from_json({"Last": "2026-01-01T00:00:00Z", "Next": "2026-01-01T00:01:00"}).last == \
        utc(2026, 1, 1)
