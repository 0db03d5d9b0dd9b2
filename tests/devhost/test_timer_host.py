"""Timer trigger in the dev host with an injected clock: schedule, monitor status, past due, singleton."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone

import pytest

from devstack.devhost import ManualClock

from .toyapp import wait_for

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 10, 0, 30, tzinfo=timezone.utc)
EVERY_MINUTE = "0 */1 * * * *"


def status_blob(blob_service, app) -> dict:
    raw = blob_service.get_blob_client(
        "azure-webjobs-hosts", f"timers/{app.host_id}/Host.Functions.tick/status").download_blob().readall()
    return json.loads(raw)


def ticks(app) -> list[dict]:
    return app.calls("tick_start")


def test_scheduled_runs_and_past_due_after_restart(make_toy_app, blob_service):
    app = make_toy_app(schedule=EVERY_MINUTE)
    clock = ManualClock(T0)
    host = app.host(clock=clock)
    assert clock.wait_for_sleepers(1)
    assert ticks(app) == []
    # use_monitor defaults to on for a once-a-minute schedule: the initial status is written at start.
    assert status_blob(blob_service, app) == {"Last": "0001-01-01T00:00:00", "Next": "2026-03-02T10:01:00+00:00",
                                              "LastUpdated": "2026-03-02T10:00:30+00:00"}
    clock.advance(timedelta(seconds=30))          # 10:01:00
    wait_for(lambda: app.calls("tick_done"))
    [first] = ticks(app)
    assert first["past_due"] is False
    assert first["status"]["Next"] == "2026-03-02T10:01:00+00:00"
    wait_for(lambda: status_blob(blob_service, app)["Last"] == "2026-03-02T10:01:00+00:00")
    assert status_blob(blob_service, app)["Next"] == "2026-03-02T10:02:00+00:00"
    host.stop()

    # Down from 10:01 to 10:05:10: the 10:02 occurrence was missed, so the timer runs at once, past due.
    later = ManualClock(T0 + timedelta(minutes=4, seconds=40))
    app.host(clock=later)
    assert later.wait_for_sleepers(1)
    wait_for(lambda: len(app.calls("tick_done")) == 2)
    second = ticks(app)[1]
    assert second["past_due"] is True
    assert second["status"]["Last"] == "2026-03-02T10:01:00+00:00"
    assert second["status"]["Next"] == "2026-03-02T10:02:00+00:00"
    # A past-due run is unscheduled: the next occurrence is computed from the run time.
    wait_for(lambda: status_blob(blob_service, app)["Next"] == "2026-03-02T10:06:00+00:00")


def test_restart_before_next_occurrence_is_not_past_due(make_toy_app):
    app = make_toy_app(schedule=EVERY_MINUTE)
    clock = ManualClock(T0)
    app.host(clock=clock)
    assert clock.wait_for_sleepers(1)
    app.hosts[-1].stop()
    again = ManualClock(T0 + timedelta(seconds=20))   # 10:00:50, before the recorded Next (10:01)
    app.host(clock=again)
    assert again.wait_for_sleepers(1)
    assert ticks(app) == []


def test_run_on_startup_runs_once_per_start(make_toy_app):
    app = make_toy_app(schedule="0 0 0 1 1 *", timer_kwargs=", run_on_startup=True, use_monitor=False")
    for _ in range(2):
        clock = ManualClock(T0)
        app.host(clock=clock)
        assert clock.wait_for_sleepers(1)
        app.hosts[-1].stop()
    assert [t["past_due"] for t in ticks(app)] == [False, False]
    assert ticks(app)[0]["status"] == {}  # unmonitored timers get no ScheduleStatus


def test_a_long_run_delays_the_next_tick_instead_of_overlapping(make_toy_app):
    app = make_toy_app(schedule=EVERY_MINUTE, timer_kwargs=", use_monitor=False")
    clock = ManualClock(T0)
    app.host(clock=clock)
    assert clock.wait_for_sleepers(1)
    app.hold_file.touch()
    clock.advance(timedelta(seconds=30))                   # 10:01:00 -> run starts and blocks
    wait_for(lambda: len(ticks(app)) == 1)
    clock.advance(timedelta(minutes=2, seconds=30))        # 10:03:30: 10:02 and 10:03 pass during the run
    release = threading.Timer(0.2, app.hold_file.unlink)
    release.start()
    wait_for(lambda: len(app.calls("tick_done")) == 2)     # one catch-up run, not two
    assert clock.wait_for_sleepers(1)
    assert len(ticks(app)) == 2
    clock.advance(timedelta(seconds=30))                   # 10:04:00
    wait_for(lambda: len(ticks(app)) == 3)


def test_timer_schedule_from_app_setting_is_validated(make_toy_app):
    from devstack.devhost import DevHostError
    app = make_toy_app(schedule="61 * * * * *")
    with pytest.raises(DevHostError, match="not a valid NCRONTAB"):
        app.host()
