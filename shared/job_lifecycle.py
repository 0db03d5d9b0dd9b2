"""Our period jobs (shared/job_periods.py), looked at every tick through one List Jobs call.

Health, before reconcile:
- completed (terminated by someone, or by a constraint): a completed job accepts no task ever again, so
  it is deleted; a later task of its period creates it again. Tasks that were still waiting in it
  vanish with it; the liveness audit re-adds their files;
- terminating / deleting: Batch is still busy with it; not listed again until it is gone;
- disabled / disabling: reported, not undone - the app never disables a job, so an operator did, and
  re-enabling it is theirs to decide.

Retirement, after scaling (maintenance): a job whose period ended more than
`COMPLETED_TASK_RETENTION_SECONDS` ago is deleted whole - one call, however many tasks it holds - once
  1. it has no active and no running task (its task counts, one call), and
  2. this tick's reconcile was complete and listed none of its tasks: every transition in it is older
     than the watermark's re-list window, and the watermark only moves past transitions whose rows
     were written. So every row of the job already shows its task's final state.
A row left unfinished anyway (a lost write, a held-back retry) finds its task gone at the next liveness
audit and is re-added or ended there: deleting a job never strands a file.
The job states and the last action are shown in the status row and by `./dev status pool`.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from .batch_types import JobView, TaskCounts
from .log import event, get_logger
from .reconcile import ReconcileResult

_log = get_logger("jobs")

_GONE = ("completed", "deleting", "terminating")


class OurJobs(Protocol):
    """The Batch calls this needs (shared/batch.AzureBatch)."""

    def our_jobs(self) -> list[JobView]: ...

    def delete_job(self, job_id: str) -> None: ...

    def task_counts(self, job_ids: list[str]) -> TaskCounts | None: ...


@dataclass(frozen=True)
class JobHealth:
    jobs: tuple[JobView, ...]    # ours, as listed (before any action), oldest period first
    action: str | None           # what this tick did about them, if anything

    @property
    def live_ids(self) -> list[str]:
        """Jobs whose tasks are read this tick (a completed one was just deleted; a deleting one is going)."""
        return [job.job_id for job in self.jobs if job.state not in _GONE]

    @property
    def summary(self) -> str:
        return ", ".join(f"{job.job_id}:{job.state}" for job in self.jobs) or "none"


def check_jobs(batch: OurJobs) -> JobHealth:
    jobs = tuple(batch.our_jobs())
    actions = []
    for job in jobs:
        if job.state == "completed":
            batch.delete_job(job.job_id)
            actions.append(f"{job.job_id} deleted: a completed job takes no new tasks; the next task of its "
                           "period creates it again")
            event(_log, logging.WARNING, "job.healed", job_id=job.job_id, state=job.state, action="deleted")
        elif job.state in ("disabled", "disabling"):
            event(_log, logging.WARNING, "job.disabled", job_id=job.job_id, state=job.state)
    return JobHealth(jobs, "; ".join(actions) or None)


@dataclass
class Retirement:
    retired: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)   # period over, not drained or not quiet yet


def retire_drained(batch: OurJobs, health: JobHealth, reconcile: ReconcileResult | None, *, now: datetime,
                   retention: timedelta, current_job: str, time_left: Callable[[], float]) -> Retirement:
    result = Retirement()
    for job in health.jobs:
        if job.state in _GONE or job.job_id == current_job or job.period_end + retention > now:
            continue
        quiet = reconcile is not None and reconcile.complete and reconcile.listed_by_job.get(job.job_id) == 0
        if not quiet or time_left() <= 0:
            result.waiting.append(job.job_id)
            continue
        counts = batch.task_counts([job.job_id])
        if counts is not None and (counts.active or counts.running):
            result.waiting.append(job.job_id)
            continue
        batch.delete_job(job.job_id)
        result.retired.append(job.job_id)
        event(_log, logging.INFO, "job.retired", job_id=job.job_id,
              completed_tasks=counts.completed if counts else 0)
    return result
