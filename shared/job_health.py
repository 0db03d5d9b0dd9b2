"""The standing job's health, checked every tick (one Get Job with $select=state).

- missing (never created yet, or deleted by someone): nothing to do here - the next task added (an upload,
  a pending retry, a liveness re-add) creates it again (shared/batch.py recreates on JobNotFound);
- completed (terminated by someone, or by a constraint): a completed job accepts no task ever again, so it
  is deleted; once Batch has finished deleting it, the next task added creates it again under the same id
  (the ledger's partition is the job id). Tasks that were still waiting in it vanish with it; the
  liveness audit re-adds their files;
- terminating / deleting: Batch is still busy with it; the next tick looks again;
- disabled / disabling: reported, not undone - the app never disables its job, so an operator did, and
  re-enabling it is theirs to decide.
The state and the last action are shown in the status row and by `./dev status pool`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from .log import event, get_logger

_log = get_logger("job_health")


class StandingJob(Protocol):
    job_id: str

    def job_state(self) -> str | None: ...

    def delete_job(self) -> None: ...


@dataclass(frozen=True)
class JobHealth:
    state: str               # what Batch said before any action ("missing" when there was no job)
    action: str | None       # what this tick did about it, if anything


def check_job(job: StandingJob) -> JobHealth:
    state = job.job_state() or "missing"
    if state == "completed":
        job.delete_job()
        action = "deleted: a completed job takes no new tasks; the next task added creates it again"
        event(_log, logging.WARNING, "job.healed", job_id=job.job_id, state=state, action=action)
        return JobHealth(state, action)
    if state in ("disabled", "disabling"):
        event(_log, logging.WARNING, "job.disabled", job_id=job.job_id, state=state)
    return JobHealth(state, None)
