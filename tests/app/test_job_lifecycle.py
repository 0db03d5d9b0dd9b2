"""Period jobs: which job a version goes to, and when a past job may be deleted whole."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.batch_types import JobView, TaskCounts, TaskSnapshot
from shared.job_lifecycle import check_jobs, drained_candidates, retire
from shared.job_periods import LEGACY_END, JobPeriods
from shared.reconcile import ReconcileResult

NOW = datetime(2026, 6, 1, 12, 30, tzinfo=timezone.utc)
JOBS = JobPeriods("ffmpeg-jobs", timedelta(hours=1))
HOUR = timedelta(hours=1)


def test_job_names_follow_the_period_and_read_back():
    job = JOBS.job_for(NOW - timedelta(minutes=5), NOW)
    assert job == "ffmpeg-jobs-20260601-120000"
    assert JOBS.period_end(job) == datetime(2026, 6, 1, 13, 0, tzinfo=timezone.utc)
    assert JOBS.job_for(NOW - 3 * HOUR, NOW) == "ffmpeg-jobs-late"
    assert JOBS.period_end("ffmpeg-jobs-late") == LEGACY_END and JOBS.period_end("ffmpeg-jobs") == LEGACY_END
    for foreign in ("other-20260601-120000", "ffmpeg-jobs-x", "ffmpeg-jobsx-20260601-120000", "ffmpeg-jobs-2026"):
        assert JOBS.period_end(foreign) is None


@given(written=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                            timezones=st.just(timezone.utc)),
       period=st.integers(min_value=60, max_value=7 * 24 * 3600))
def test_every_version_maps_to_one_valid_job_whose_period_contains_it(written, period):
    jobs = JobPeriods("p", timedelta(seconds=period))
    job = jobs.job_for(written, written)  # submitted at once: never the late job
    assert len(job) <= 64 and job.replace("-", "").isalnum()
    end = jobs.period_end(job)
    assert end - jobs.period <= written < end
    # Any path that submits the same version later (within two periods) addresses the same job.
    assert jobs.job_for(written, written + jobs.period) == job


@dataclass
class FakeJobs:
    jobs: list[JobView]
    counts: dict[str, TaskCounts] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    counted: list[str] = field(default_factory=list)

    def our_jobs(self):
        return list(self.jobs)

    def delete_job(self, job_id):
        self.deleted.append(job_id)

    def task_counts(self, job_ids):
        self.counted.extend(job_ids)
        return self.counts.get(job_ids[0])


def view(job_id: str, state: str = "active") -> JobView:
    return JobView(job_id, state, JOBS.period_end(job_id))


CURRENT = JOBS.job_for(NOW, NOW)
PREVIOUS = JOBS.job_for(NOW - HOUR, NOW)
OLDER = JOBS.job_for(NOW - 2 * HOUR, NOW)
IDLE = TaskCounts(active=0, running=0, completed=5, succeeded=5, failed=0)
BUSY = TaskCounts(active=1, running=0, completed=5, succeeded=5, failed=0)


def test_a_completed_job_is_deleted_and_a_disabled_one_reported():
    batch = FakeJobs([view(OLDER, "completed"), view(PREVIOUS, "disabled"), view(CURRENT)])
    health = check_jobs(batch)
    assert batch.deleted == [OLDER] and OLDER in health.action
    assert health.live_ids == [PREVIOUS, CURRENT]


def test_only_past_jobs_beyond_the_retention_with_nothing_waiting_are_candidates():
    batch = FakeJobs([view(OLDER), view(PREVIOUS), view(CURRENT), view("ffmpeg-jobs-late")],
                     counts={OLDER: IDLE, PREVIOUS: IDLE, "ffmpeg-jobs-late": BUSY})
    health = check_jobs(batch)
    # PREVIOUS ended at 12:00: inside a 1-hour retention at 12:30. OLDER ended at 11:00: past it.
    found = drained_candidates(batch, health, now=NOW, retention=HOUR, current_job=CURRENT)
    assert found == [OLDER] and CURRENT not in batch.counted and PREVIOUS not in batch.counted
    assert drained_candidates(batch, health, now=NOW, retention=timedelta(0), current_job=CURRENT) == [OLDER, PREVIOUS]


def _reconciled(**kw) -> ReconcileResult:
    return ReconcileResult(**{"listed_jobs": {OLDER, CURRENT}, "listing_complete": True, **kw})


def _held(job_id: str) -> TaskSnapshot:
    return TaskSnapshot("t", "completed", NOW, NOW, 1, "failure", None, 0, 0, None, None, None, job_id=job_id)


@pytest.mark.parametrize("reconcile,retired", [
    (_reconciled(), [OLDER]),
    (None, []),                                                        # reconcile failed this tick
    (_reconciled(write_failures=1), []),                               # a row write failed
    (_reconciled(unfinished_by_job={OLDER: 1}), []),                  # it listed a task still going
    (_reconciled(unfinished_by_job={CURRENT: 3}), [OLDER]),            # another job's work does not matter
    (_reconciled(to_resubmit=[_held(OLDER)]), []),                     # a re-add into it is pending
    (_reconciled(listed_jobs={CURRENT}, listing_complete=False), []),  # out of time before listing it
])
def test_a_candidate_is_deleted_only_after_a_complete_quiet_reconcile(reconcile, retired):
    batch = FakeJobs([view(OLDER)])
    result = retire(batch, [OLDER], reconcile, time_left=lambda: 1.0)
    assert batch.deleted == retired == result.retired
    assert result.waiting == ([] if retired else [OLDER])


def test_no_delete_starts_once_the_budget_is_spent():
    batch = FakeJobs([view(OLDER)])
    result = retire(batch, [OLDER], _reconciled(), time_left=lambda: 0.0)
    assert batch.deleted == [] and result.waiting == [OLDER]
