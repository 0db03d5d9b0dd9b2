"""Which Batch job a file's task goes to: one job per period, named after the period it covers.

A standing job that lives forever accumulates every task ever run, and deleting completed tasks one
call each cannot keep up with a busy day. So tasks go to the job of the period in which their blob
version was written (`<BATCH_JOB_ID>-YYYYMMDD-HHMMSS`, the period's start in UTC), and a period's job
is deleted whole - one call, however many tasks - once it is drained and every row is final
(shared/job_retirement.py).

The job follows from the blob version (its Last-Modified), not from when it is submitted, so the
trigger, the sweep, a retry and a resubmit address the same job and the same task id: a version
submitted twice is still one task (TaskExists), even across a period boundary. Versions written more
than two periods ago (a missed upload found late, a resubmit days later) go to one `<BATCH_JOB_ID>-late`
job instead of recreating a job per old period: the number of jobs stays bounded (Batch counts active
jobs against a per-account quota). The one race left - the same old version submitted by two paths at
the instant it crosses that horizon - costs a second conversion of the same file, never a second row.

The job named exactly `<BATCH_JOB_ID>` is the standing job of earlier versions, and `-late` has no
period: both are read like the others and retired whenever they are drained.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

_STAMP = "%Y%m%d-%H%M%S"
_STAMP_LEN = 15
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
LEGACY_END = _EPOCH  # the standing job of earlier versions: its "period" ended long ago


@dataclass(frozen=True)
class JobPeriods:
    prefix: str          # BATCH_JOB_ID; also the ledger's PartitionKey
    period: timedelta    # JOB_PERIOD_SECONDS

    @property
    def late_job(self) -> str:
        return f"{self.prefix}-late"

    def job_for(self, written: datetime, now: datetime) -> str:
        """The job of the period containing `written`, or the late job for a version older than two periods."""
        if written < now - 2 * self.period:
            return self.late_job
        seconds = int(self.period.total_seconds())
        since_epoch = int((written.astimezone(timezone.utc) - _EPOCH).total_seconds())
        start = _EPOCH + timedelta(seconds=since_epoch - since_epoch % seconds)
        return f"{self.prefix}-{start.strftime(_STAMP)}"

    def period_end(self, job_id: str) -> datetime | None:
        """When the period of one of our jobs ended (LEGACY_END for the old standing job); None when the
        job is not ours (another app's, or a name we did not make)."""
        if job_id in (self.prefix, self.late_job):
            return LEGACY_END
        head, stamp = job_id[:-_STAMP_LEN], job_id[-_STAMP_LEN:]
        if head != f"{self.prefix}-":
            return None
        try:
            start = datetime.strptime(stamp, _STAMP).replace(tzinfo=timezone.utc)
        except ValueError:
            return None
        return start + self.period
