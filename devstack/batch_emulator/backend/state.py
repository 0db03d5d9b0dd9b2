"""The emulator's live state: records, the lock that guards them, write-through persistence, and the wake-up
signal the scheduler waits on. Knows nothing of HTTP."""
from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections import OrderedDict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterable

from .. import errors, ids, store
from ..config import EmulatorConfig
from ..timeutil import UNLIMITED_DURATION, parse_duration, parse_iso, utcnow
from .records import JobRecord, NodeRecord, PoolRecord, TaskRecord

log = logging.getLogger("devstack.batch_emulator")

DEFAULT_RETENTION = timedelta(days=7)   # SDK BatchTaskConstraints.retention_time: "The default is 7 days"


class State:
    def __init__(self, config: EmulatorConfig, persistence: store.Store, work_dir: Path) -> None:
        self.config = config
        self.store = persistence
        self.work_dir = work_dir               # node directories live under work_dir/nodes
        self.account_url = f"http://{config.public_host}:{config.port}"
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.pools: dict[str, PoolRecord] = {}
        self.jobs: dict[str, JobRecord] = {}
        # Active tasks in the order they became schedulable (FIFO within a priority); ref -> record.
        self.active: OrderedDict[str, TaskRecord] = OrderedDict()
        self.active_version = 0  # bumped on every enqueue/dequeue: lets the scheduler skip fruitless dispatches
        self._seq = itertools.count(1)
        self.trash: list[Path] = []  # directories to delete outside the lock (scheduler empties it)
        # Completed tasks whose directory goes at (retention due, seq, ref, completedAt): the scheduler pops the
        # due ones instead of looking at every task of every job.
        self._retention: list[tuple[datetime, int, str, str]] = []

    # --- clock and sequencing ---------------------------------------------------------------------------
    @staticmethod
    def now() -> datetime:
        return utcnow()

    def next_seq(self) -> int:
        return next(self._seq)

    def bump_seq(self, seen: int) -> None:
        """After loading, continue numbering above the highest persisted sequence."""
        current = next(self._seq)
        self._seq = itertools.count(max(current, seen + 1))

    def wake(self) -> None:
        """Tell the scheduler something changed (caller holds the lock)."""
        self.changed.notify_all()

    # --- lookups -----------------------------------------------------------------------------------------
    def pool(self, pool_id: str) -> PoolRecord | None:
        return self.pools.get(ids.key(pool_id))

    def job(self, job_id: str) -> JobRecord | None:
        return self.jobs.get(ids.key(job_id))

    def existing_job(self, job_id: str) -> JobRecord:
        """The job, or the service's JobNotFound."""
        job = self.job(job_id)
        if job is None:
            raise errors.job_not_found()
        return job

    def task_by_ref(self, ref: str) -> TaskRecord | None:
        job_key, _, task_key = ref.partition("/")
        job = self.jobs.get(job_key)
        return job.tasks.get(task_key) if job else None

    def node_dir(self, pool_key: str, node_id: str) -> Path:
        return self.work_dir / "nodes" / pool_key / node_id

    # --- write-through -----------------------------------------------------------------------------------
    def save_pool(self, pool: PoolRecord) -> None:
        self.store.put(store.POOL, pool.key, pool.persisted())

    def save_node(self, node: NodeRecord) -> None:
        self.store.put(store.NODE, node.store_key, node.persisted(), parent=node.pool_key)

    def save_job(self, job: JobRecord) -> None:
        self.store.put(store.JOB, job.key, job.persisted())

    def save_task(self, task: TaskRecord) -> None:
        self._index(task)
        self.store.put(store.TASK, task.ref, task.persisted(), parent=task.job_key)

    def save_tasks(self, tasks: Iterable[TaskRecord]) -> None:
        tasks = list(tasks)
        for task in tasks:
            self._index(task)
        items = [(t.ref, t.persisted(), t.job_key) for t in tasks]
        if items:
            self.store.put_many(store.TASK, items)

    def _index(self, task: TaskRecord) -> None:
        """Every task change is saved through here: the job's indexes follow it (task_index.py)."""
        job = self.jobs.get(task.job_key)
        if job is not None and job.tasks.get(task.key) is task:
            job.index.saved(task)
            self.schedule_retention(task)

    # --- retention of completed tasks' directories ----------------------------------------------------------
    def schedule_retention(self, task: TaskRecord) -> None:
        """A completed task (not cleaned yet) is due for cleaning at completedAt + its retentionTime."""
        done = task.sys.get("completedAt")
        if task.state != "completed" or not done or task.sys.get("cleaned") or task.retention_for == done:
            return
        raw = (task.doc.get("constraints") or {}).get("retentionTime")
        retention = DEFAULT_RETENTION if not raw or raw == UNLIMITED_DURATION else parse_duration(raw)
        task.retention_for = done
        heapq.heappush(self._retention, (parse_iso(done) + retention, task.seq, task.ref, done))

    def retention_due(self, now: datetime) -> list[TaskRecord]:
        """Completed tasks whose retention has passed, still completed for the same completion and not cleaned."""
        due = []
        while self._retention and self._retention[0][0] <= now:
            _, _, ref, done = heapq.heappop(self._retention)
            task = self.task_by_ref(ref)
            if task is not None and task.state == "completed" and task.sys.get("completedAt") == done \
                    and not task.sys.get("cleaned"):
                due.append(task)
        return due

    def forget_pool(self, pool: PoolRecord) -> None:
        self.pools.pop(pool.key, None)
        with self.store.batch():
            self.store.delete_children(store.NODE, pool.key)
            self.store.delete(store.POOL, pool.key)

    def forget_node(self, pool: PoolRecord, node: NodeRecord) -> None:
        pool.nodes.pop(node.id, None)
        self.store.delete(store.NODE, node.store_key)

    def forget_job(self, job: JobRecord) -> None:
        self.jobs.pop(job.key, None)
        for task in job.tasks.values():
            self.active.pop(task.ref, None)
        with self.store.batch():
            self.store.delete_children(store.TASK, job.key)
            self.store.delete(store.JOB, job.key)

    def forget_task(self, task: TaskRecord) -> None:
        job = self.jobs.get(task.job_key)
        if job is not None:
            job.tasks.pop(task.key, None)
            job.index.removed(task)
        self.active.pop(task.ref, None)
        self.store.delete(store.TASK, task.ref)

    # --- active queue ------------------------------------------------------------------------------------
    def enqueue(self, task: TaskRecord) -> None:
        self.active[task.ref] = task
        self.active.move_to_end(task.ref)
        self.active_version += 1

    def dequeue(self, task: TaskRecord) -> None:
        if self.active.pop(task.ref, None) is not None:
            self.active_version += 1
