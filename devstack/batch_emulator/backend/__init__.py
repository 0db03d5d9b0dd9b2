"""The emulator backend (moto's `models.py`): state plus operations, no HTTP.

    backend = Backend(config)        # opens the store and restores state (restart recovery)
    backend.pools.create(body); backend.jobs.get("job"); backend.tasks.list(...)

Restart recovery follows what a node reboot does to the service: tasks that were running are requeued
(state active, requeueCount+1), nodes come back (nodes that were booting boot again; start tasks that had not
finished run again); everything else is restored exactly as it was persisted.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from .. import store
from ..config import EmulatorConfig
from ..timeutil import iso
from . import lifecycle
from .jobs import JobService
from .pools import PoolService
from .records import JobRecord, NodeRecord, PoolRecord, TaskRecord
from .state import State
from .tasks import TaskService

__all__ = ["Backend", "State"]

log = logging.getLogger("devstack.batch_emulator")


class Backend:
    def __init__(self, config: EmulatorConfig, account_url: str | None = None) -> None:
        self.config = config
        self._tmp: Path | None = None
        if config.data_dir is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="batch-emulator-"))
            work_dir = self._tmp
        else:
            work_dir = config.data_dir
            work_dir.mkdir(parents=True, exist_ok=True)
        self.state = State(config, store.open_store(config.data_dir), work_dir)
        if account_url:
            self.state.account_url = account_url
        self.pools = PoolService(self.state)
        self.jobs = JobService(self.state)
        self.tasks = TaskService(self.state)
        self.recovered = self._load()

    @property
    def lock(self):
        return self.state.lock

    def close(self) -> None:
        with self.state.lock:
            for job in self.state.jobs.values():
                for task in job.tasks.values():
                    if task.cancel is not None:
                        task.cancel.set()
            self.state.store.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    # --- restart recovery -----------------------------------------------------------------------------------
    def _load(self) -> dict[str, int]:
        s = self.state
        now = s.now()
        max_seq = 0
        requeued = 0
        with s.lock:
            for key, _parent, rec in s.store.load(store.POOL):
                pool = PoolRecord(doc=rec["doc"], sys=rec.get("sys", {}))
                s.pools[key] = pool
                max_seq = max(max_seq, pool.sys.get("seq", 0))
            for _key, parent, rec in s.store.load(store.NODE):
                pool = s.pools.get(parent)
                if pool is None:
                    continue
                node = NodeRecord(pool_key=parent, doc=rec["doc"], sys=rec.get("sys", {}))
                node.sys["running"] = {}
                node.set(runningTasksCount=0, runningTaskSlotsCount=0)
                if node.leaving is not None:
                    # It was being removed when the process stopped: finish the removal now.
                    continue
                if node.state in ("creating", "starting", "waitingforstarttask", "rebooting"):
                    node.sys["bootStartedAt"] = iso(now)  # boots again, taking node_start_delay
                    node.transition("creating", now, touch=False)
                elif node.state in ("running", "idle"):
                    node.transition("idle", now, touch=False)
                pool.nodes[node.id] = node
                max_seq = max(max_seq, node.sys.get("seq", 0))
            for key, _parent, rec in s.store.load(store.JOB):
                job = JobRecord(doc=rec["doc"], sys=rec.get("sys", {}))
                s.jobs[key] = job
                max_seq = max(max_seq, job.sys.get("seq", 0))
            to_requeue: list[TaskRecord] = []
            for _key, parent, rec in s.store.load(store.TASK):
                job = s.jobs.get(parent)
                if job is None:
                    continue
                task = TaskRecord(job_key=parent, doc=rec["doc"], sys=rec.get("sys", {}))
                job.tasks[task.key] = task
                max_seq = max(max_seq, task.seq)
                if task.state in ("running", "preparing"):
                    to_requeue.append(task)
            rows = sorted((t for j in s.jobs.values() for t in j.tasks.values()), key=lambda t: t.seq)
            for job in s.jobs.values():  # restore seq order within each job, and its indexes
                job.tasks = dict(sorted(job.tasks.items(), key=lambda kv: kv[1].seq))
                job.index.rebuild(job.tasks.values())
                for task in job.tasks.values():
                    s.schedule_retention(task)
            s.bump_seq(max_seq)
            with s.store.batch():
                for task in to_requeue:
                    lifecycle.requeue(s, task, now)
                    requeued += 1
                for task in rows:
                    job = s.jobs[task.job_key]
                    if task.state == "active" and job.state == "active":
                        s.enqueue(task)
                for pool in s.pools.values():
                    pool.sys.pop("capReported", None)
                    s.save_pool(pool)
                    for node in pool.nodes.values():
                        s.save_node(node)
                # forget nodes that were leaving (not re-added above)
                for key, parent, rec in list(s.store.load(store.NODE)):
                    pool = s.pools.get(parent)
                    if pool is None or rec["doc"]["id"] not in pool.nodes:
                        s.store.delete(store.NODE, key)
            # Re-queue order must follow seq so FIFO survives a restart.
            ordered = sorted(s.active.values(), key=lambda t: t.seq)
            s.active.clear()
            for task in ordered:
                s.active[task.ref] = task
        summary = {"pools": len(s.pools), "jobs": len(s.jobs),
                   "tasks": sum(len(j.tasks) for j in s.jobs.values()), "requeued": requeued}
        if any(summary.values()):
            log.info("restored state %s at %s", summary, iso(now))
        return summary
