"""Our period jobs (shared/job_periods.py), looked at every tick through one List Jobs call.

Health, before reconcile:
- completed (terminated by someone, or by a constraint): a completed job accepts no task ever again, so
  it is deleted; a later task of its period creates it again. Tasks that were still waiting in it
  vanish with it; the liveness audit re-adds their files;
- terminating / deleting: Batch is still busy with it; not listed again until it is gone;
- disabled / disabling: reported, not undone - the app never disables a job, so an operator did, and
  re-enabling it is theirs to decide.

Retirement: a job whose period ended more than `COMPLETED_TASK_RETENTION_SECONDS` ago is deleted
whole - one call, however many tasks it holds - when
  1. its task counts, read before this tick's reconcile, show no active and no running task (one call
     per such job: `drained_candidates`), and
  2. this tick's reconcile listed it to its last page, with every write done, found no unfinished task
     of it and held none back for a re-add (`retire`).
Every task completed before the counts were read was listed either by this complete run or, being older
than the watermark's re-list window, by an earlier complete run - the watermark only moves past
transitions whose rows were written. So every row of the job shows its task's final state.
A row left unfinished anyway (a lost write, a re-add that failed, a late upload of that period added
between the counts and the delete) finds its task gone at the liveness audit and is re-added or ended
there: deleting a job never strands a file.
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
    waiting: list[str] = field(default_factory=list)   # period over, but not drained or not reconciled yet


def drained_candidates(batch: OurJobs, health: JobHealth, *, now: datetime, retention: timedelta,
                       current_job: str) -> list[str]:
    """Jobs past their period and retention whose counts show nothing waiting or running (read before reconcile)."""
    found = []
    for job in health.jobs:
        if job.state in _GONE or job.job_id == current_job or job.period_end + retention > now:
            continue
        counts = batch.task_counts([job.job_id])
        if counts is None or not (counts.active or counts.running):
            found.append(job.job_id)
    return found


def retire(batch: OurJobs, candidates: list[str], reconcile: ReconcileResult | None,
           time_left: Callable[[], float]) -> Retirement:
    """Delete the drained candidates this tick's complete reconcile saw settled."""
    result = Retirement()
    held_back = {task.job_id for task in reconcile.to_resubmit} if reconcile is not None else set()
    for job_id in candidates:
        settled = reconcile is not None and reconcile.complete and job_id in reconcile.listed_jobs \
            and not reconcile.unfinished_by_job.get(job_id) and job_id not in held_back
        if not settled or time_left() <= 0:
            result.waiting.append(job_id)
            continue
        batch.delete_job(job_id)
        result.retired.append(job_id)
        event(_log, logging.INFO, "job.retired", job_id=job_id)
    return result
