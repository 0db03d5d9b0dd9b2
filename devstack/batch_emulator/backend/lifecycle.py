"""Task state transitions shared by the API (terminate, delete, job terminate) and the scheduler (start, finish,
retry, requeue). All functions expect the backend lock to be held and write the changed records through.

State model (SDK BatchTaskState docstrings): active -> running -> completed; a failed try with retries left goes
back to active (retryCount+1); a requeue (node removed with `requeue`, job disabled with `requeue`, emulator
restart) goes back to active with requeueCount+1. executionInfo.startTime is present only while running or
completed; exitCode/endTime/result only when completed.
"""
from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from ..timeutil import iso
from .records import JobRecord, NodeRecord, TaskRecord
from .state import State

# Captured from the service for terminate_task (executionInfo.failureInfo of an ended task).
TASK_ENDED_BY_USER = {"category": "usererror", "code": "TaskEnded", "message": "Task Was Ended by User Request"}
# Node removed with nodeDeallocationOption=terminate: the docs say running tasks "are completed with failureInfo
# indicating that they were terminated"; the exact code/message are not published (emulator wording).
TASK_ENDED_NODE_REMOVED = {"category": "servererror", "code": "TaskEnded",
                           "message": "Task was ended because its compute node was removed from the pool"}
_run_ids = itertools.count(1)


def new_run_token() -> int:
    return next(_run_ids)


def attach(state: State, task: TaskRecord, node: NodeRecord, slots: int, now: datetime) -> int:
    """active -> running on `node`; returns the run token the outcome must present."""
    state.dequeue(task)
    token = new_run_token()
    task.sys.update(run=token, node=node.id, pool=node.pool_key, slots=slots)
    info = dict(task.doc.get("executionInfo") or {})
    for transient in ("endTime", "exitCode", "result", "failureInfo"):
        info.pop(transient, None)
    info["startTime"] = iso(now)
    if info.get("retryCount", 0) > 0:
        info["lastRetryTime"] = iso(now)
    task.set(executionInfo=info, nodeInfo=node_info(state, node, task))
    task.transition("running", now)
    node.running[task.ref] = slots
    _node_load_changed(node, now)
    state.save_node(node)
    state.save_task(task)
    return token


def node_info(state: State, node: NodeRecord, task: TaskRecord) -> dict[str, Any]:
    pool = state.pools.get(node.pool_key)
    pool_id = pool.id if pool else node.pool_key
    job = state.jobs.get(task.job_key)
    job_id = job.id if job else task.job_key
    root = f"workitems/{job_id}/job-1/{task.id}"
    return {"affinityId": node.doc.get("affinityId"), "nodeUrl": node.doc.get("url"), "poolId": pool_id,
            "nodeId": node.id, "taskRootDirectory": root,
            "taskRootDirectoryUrl": f"{state.account_url}/pools/{pool_id}/nodes/{node.id}/files/{root}"}


def detach(state: State, task: TaskRecord, now: datetime, *, succeeded: bool | None = None) -> None:
    """Release the node slot a running task holds (if any) and invalidate its run token."""
    node_id = task.sys.pop("node", None)
    pool_key = task.sys.pop("pool", None)
    task.sys.pop("slots", None)
    task.sys["run"] = None
    if task.cancel is not None:
        task.cancel.set()
        task.cancel = None
    if node_id is None:
        return
    pool = state.pools.get(pool_key) if pool_key else None
    node = pool.nodes.get(node_id) if pool else None
    if node is None:
        return
    node.running.pop(task.ref, None)
    if succeeded is not None:
        node.set(totalTasksRun=node.doc.get("totalTasksRun", 0) + 1,
                 totalTasksSucceeded=node.doc.get("totalTasksSucceeded", 0) + (1 if succeeded else 0))
        recent = [r for r in node.doc.get("recentTasks", []) if r.get("taskId") != task.id][-9:]
        recent.append({"taskUrl": task.doc.get("url"), "jobId": (state.jobs.get(task.job_key).id
                       if state.jobs.get(task.job_key) else task.job_key), "taskId": task.id,
                       "taskState": task.state, "executionInfo": task.doc.get("executionInfo")})
        node.set(recentTasks=recent)
    _node_load_changed(node, now)
    state.save_node(node)


def _node_load_changed(node: NodeRecord, now: datetime) -> None:
    node.set(runningTasksCount=len(node.running), runningTaskSlotsCount=node.used_slots)
    if node.state in ("idle", "running"):
        node.transition("running" if node.running else "idle", now, touch=False)


def complete(state: State, task: TaskRecord, now: datetime, *, exit_code: int | None, result: str,
             failure_info: dict[str, Any] | None, start_time: datetime | None = None) -> None:
    """-> completed with the given outcome."""
    state.dequeue(task)
    info = dict(task.doc.get("executionInfo") or {})
    if start_time is not None and "startTime" not in info:
        info["startTime"] = iso(start_time)
    info["endTime"] = iso(now)
    info["result"] = result
    info.pop("exitCode", None)
    info.pop("failureInfo", None)
    if exit_code is not None:
        info["exitCode"] = exit_code
    if failure_info:
        info["failureInfo"] = failure_info
    task.set(executionInfo=info)
    task.transition("completed", now)
    detach(state, task, now, succeeded=(result == "success"))
    task.sys["completedAt"] = iso(now)
    pool = state.pools.get(task.doc.get("nodeInfo", {}).get("poolId", "").lower())
    if pool is not None:
        pool.completions["succeeded" if result == "success" else "failed"] += 1
    state.save_task(task)
    job = state.jobs.get(task.job_key)
    if job is not None:
        maybe_finish_job(state, job, now)


def retry(state: State, task: TaskRecord, now: datetime) -> None:
    """A failed try with retries left: back to active with retryCount+1."""
    detach(state, task, now, succeeded=False)
    info = dict(task.doc.get("executionInfo") or {})
    info["retryCount"] = info.get("retryCount", 0) + 1
    for transient in ("startTime", "endTime", "result", "failureInfo", "exitCode"):
        info.pop(transient, None)
    task.set(executionInfo=info)
    task.transition("active", now)
    state.enqueue(task)
    state.save_task(task)


def requeue(state: State, task: TaskRecord, now: datetime) -> None:
    """Running task interrupted by the system (node removal, job disable, restart): back to active."""
    detach(state, task, now)
    info = dict(task.doc.get("executionInfo") or {})
    info["requeueCount"] = info.get("requeueCount", 0) + 1
    info["lastRequeueTime"] = iso(now)
    for transient in ("startTime", "endTime", "result", "failureInfo", "exitCode"):
        info.pop(transient, None)
    task.set(executionInfo=info, nodeInfo=None)
    task.transition("active", now)
    state.enqueue(task)
    state.save_task(task)


def end(state: State, task: TaskRecord, now: datetime, failure_info: dict[str, Any]) -> None:
    """Terminate an active or running task: completed/failure without an exit code."""
    complete(state, task, now, exit_code=None, result="failure", failure_info=failure_info)


def maybe_finish_job(state: State, job: JobRecord, now: datetime) -> None:
    """onAllTasksComplete=terminatejob: the job completes once every task has completed."""
    if job.state != "active" or (job.doc.get("onAllTasksComplete") or "noaction").lower() != "terminatejob":
        return
    counts = job.index.counts()["taskCounts"]  # kept as tasks are saved: O(1), not a scan per completion
    if job.tasks and counts["active"] == 0 and counts["running"] == 0:
        finish_job(state, job, now, "AllTasksComplete")


def finish_job(state: State, job: JobRecord, now: datetime, reason: str) -> None:
    info = dict(job.doc.get("executionInfo") or {})
    info["endTime"] = iso(now)
    info["terminateReason"] = reason
    job.set(executionInfo=info)
    job.transition("completed", now)
    for task in job.tasks.values():
        state.dequeue(task)
    state.save_job(job)
