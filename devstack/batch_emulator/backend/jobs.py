"""Job operations: create, get, list, update (PATCH/PUT), delete, terminate, disable/enable, task counts."""
from __future__ import annotations

from typing import Any

from .. import errors, ids, odata
from ..timeutil import UNLIMITED_DURATION, iso
from . import lifecycle, validate as v
from .records import JobRecord
from .state import State

JOB_PROPERTIES = ("id", "displayName", "usesTaskDependencies", "url", "eTag", "lastModified", "creationTime", "state",
                  "stateTransitionTime", "previousState", "previousStateTransitionTime", "priority",
                  "allowTaskPreemption", "maxParallelTasks", "constraints", "jobManagerTask", "jobPreparationTask",
                  "jobReleaseTask", "commonEnvironmentSettings", "poolInfo", "onAllTasksComplete", "onTaskFailure",
                  "networkConfiguration", "metadata", "executionInfo", "stats")
ALL_TASKS_COMPLETE = ("noaction", "terminatejob")
TASK_FAILURE = ("noaction", "performexitoptionsjobaction")
DISABLE_OPTIONS = ("requeue", "terminate", "wait")
# Features the emulator does not run; refused with 501 rather than silently accepted and ignored.
UNSUPPORTED_JOB_FEATURES = ("jobManagerTask", "jobPreparationTask", "jobReleaseTask")


def _constraints(body: dict[str, Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
    c = v.obj(body, "constraints") or {}
    v.duration(c, "maxWallClockTime", path="constraints.maxWallClockTime")
    v.integer(c, "maxTaskRetryCount", minimum=-1, path="constraints.maxTaskRetryCount")
    out = dict(base or {"maxWallClockTime": UNLIMITED_DURATION, "maxTaskRetryCount": 0})
    out.update({k: val for k, val in c.items() if val is not None})
    return out


def _pool_info(body: dict[str, Any]) -> dict[str, Any]:
    info = v.obj(body, "poolInfo", required=True)
    assert info is not None
    if info.get("autoPoolSpecification") is not None:
        raise errors.BatchError(501, "NotImplemented", "The Batch emulator does not support auto pools.",
                                [("PropertyName", "poolInfo.autoPoolSpecification")])
    pool_id = v.string(info, "poolId", required=True, path="poolInfo.poolId")
    ids.validate(pool_id, "poolInfo.poolId")
    return dict(info)


class JobService:
    def __init__(self, state: State) -> None:
        self.s = state

    def _job(self, job_id: str) -> JobRecord:
        return self.s.existing_job(job_id)

    def create(self, body: Any) -> JobRecord:
        body = v.body_object(body)
        job_id = ids.validate(body.get("id"))
        for feature in UNSUPPORTED_JOB_FEATURES:
            if body.get(feature) is not None:
                raise errors.BatchError(501, "NotImplemented", f"The Batch emulator does not run a {feature}.",
                                        [("PropertyName", feature)])
        pool_info = _pool_info(body)
        priority = v.integer(body, "priority", default=0, minimum=-1000, maximum=1000)
        max_parallel = v.integer(body, "maxParallelTasks", default=-1, minimum=-1)
        if max_parallel == 0:
            raise errors.invalid_property_value("maxParallelTasks", 0, "The value must be -1 or greater than 0.")
        constraints = _constraints(body)
        on_complete = v.enum(body, "onAllTasksComplete", ALL_TASKS_COMPLETE, default="noaction")
        on_failure = v.enum(body, "onTaskFailure", TASK_FAILURE, default="noaction")
        v.name_value_pairs(body, "metadata")
        v.name_value_pairs(body, "commonEnvironmentSettings")
        v.boolean(body, "usesTaskDependencies")
        now = self.s.now()
        with self.s.lock:
            if ids.key(job_id) in self.s.jobs:
                raise errors.job_exists()
            doc: dict[str, Any] = dict(body)
            doc.update({
                "id": job_id,
                "url": f"{self.s.account_url}/jobs/{job_id}",
                "creationTime": iso(now),
                "state": "active",
                "stateTransitionTime": iso(now),
                "priority": priority,
                "maxParallelTasks": max_parallel,
                "allowTaskPreemption": bool(body.get("allowTaskPreemption", False)),
                "usesTaskDependencies": bool(body.get("usesTaskDependencies", False)),
                "constraints": constraints,
                "poolInfo": pool_info,
                "onAllTasksComplete": on_complete,
                "onTaskFailure": on_failure,
                "executionInfo": {"startTime": iso(now), "poolId": pool_info["poolId"]},
            })
            job = JobRecord(doc=doc, sys={"seq": self.s.next_seq()})
            job.touch(now)
            self.s.jobs[job.key] = job
            self.s.save_job(job)
            return job

    def get(self, job_id: str) -> JobRecord:
        with self.s.lock:
            return self._job(job_id)

    def list(self, filter_text: str | None, select: str | None, max_results: int, after: int | None) -> odata.Page:
        predicate = odata.compile_filter(filter_text, odata.JOB_FILTERS)
        fields = odata.parse_select(select, JOB_PROPERTIES)
        with self.s.lock:
            rows = [(j.sys["seq"], j.doc) for j in self.s.jobs.values()]
        rows.sort(key=lambda r: r[0])
        return odata.paginate(rows, predicate, after, max_results, fields)

    def update(self, job_id: str, body: Any, *, replace: bool) -> JobRecord:
        """PATCH (replace=False: only given properties) or PUT (replace=True: unspecified ones reset)."""
        body = v.body_object(body)
        allowed = {"priority", "maxParallelTasks", "allowTaskPreemption", "constraints", "poolInfo",
                   "onAllTasksComplete", "metadata", "networkConfiguration", "onTaskFailure", "displayName"}
        for name in body:
            if name not in allowed:
                raise errors.invalid_property_value(name, "(value)", "This property cannot be updated.")
        changes: dict[str, Any] = {}
        if replace or "priority" in body:
            changes["priority"] = v.integer(body, "priority", default=0, minimum=-1000, maximum=1000)
        if replace or "maxParallelTasks" in body:
            changes["maxParallelTasks"] = v.integer(body, "maxParallelTasks", default=-1, minimum=-1)
        if replace or "allowTaskPreemption" in body:
            changes["allowTaskPreemption"] = bool(v.boolean(body, "allowTaskPreemption", default=False))
        if replace or "constraints" in body:
            changes["constraints"] = _constraints(body)
        if replace or "onAllTasksComplete" in body:
            changes["onAllTasksComplete"] = v.enum(body, "onAllTasksComplete", ALL_TASKS_COMPLETE, default="noaction")
        if "onTaskFailure" in body:
            changes["onTaskFailure"] = v.enum(body, "onTaskFailure", TASK_FAILURE, default="noaction")
        if replace or "metadata" in body:
            changes["metadata"] = v.name_value_pairs(body, "metadata") or None
        if body.get("poolInfo") is not None:
            changes["poolInfo"] = _pool_info(body)
        elif replace:
            raise errors.missing_required_property("poolInfo")
        now = self.s.now()
        with self.s.lock:
            job = self._job(job_id)
            if job.state in ("completed", "terminating", "deleting"):
                raise {"completed": errors.job_completed, "terminating": errors.job_being_terminated,
                       "deleting": errors.job_being_deleted}[job.state]()
            if "poolInfo" in changes and job.state != "disabled":
                # The pool can only be changed while the job is disabled (SDK BatchJobUpdateOptions.pool_info).
                raise errors.BatchError(409, "OperationInvalidForCurrentState",
                                        "The pool of a job can only be changed while the job is disabled.")
            if "onAllTasksComplete" in changes and job.doc.get("onAllTasksComplete") == "terminatejob" and \
                    changes["onAllTasksComplete"] == "noaction":
                raise errors.invalid_property_value("onAllTasksComplete", "noaction",
                                                    "onAllTasksComplete cannot be changed from terminatejob.")
            job.set(**changes)
            if "poolInfo" in changes:
                job.set_in("executionInfo", poolId=changes["poolInfo"]["poolId"])
            job.touch(now)
            self.s.save_job(job)
            lifecycle.maybe_finish_job(self.s, job, now)
            self.s.wake()
            return job

    def delete(self, job_id: str) -> None:
        now = self.s.now()
        with self.s.lock:
            job = self._job(job_id)
            if job.state == "deleting":
                return
            job.transition("deleting", now)
            for task in job.tasks.values():
                self.s.dequeue(task)
                if task.state == "running":
                    lifecycle.detach(self.s, task, now)
            self.s.save_job(job)
            self.s.wake()  # the scheduler forgets the job once its processes are gone

    def terminate(self, job_id: str, body: Any) -> JobRecord:
        body = v.body_object(body if body is not None else {})
        reason = v.string(body, "terminateReason") or "UserTerminate"
        now = self.s.now()
        with self.s.lock:
            job = self._job(job_id)
            if job.state == "completed":
                raise errors.job_completed()
            if job.state == "deleting":
                raise errors.job_being_deleted()
            if job.state == "terminating":
                raise errors.job_being_terminated()
            job.transition("terminating", now)
            # Running tasks are terminated; tasks that never ran stay as they are (they will not be scheduled).
            for task in list(job.tasks.values()):
                self.s.dequeue(task)
                if task.state == "running":
                    lifecycle.end(self.s, task, now, lifecycle.TASK_ENDED_BY_USER)
            lifecycle.finish_job(self.s, job, now, reason)
            self.s.wake()
            return job

    def disable(self, job_id: str, body: Any) -> JobRecord:
        body = v.body_object(body)
        option = v.enum(body, "disableTasks", DISABLE_OPTIONS)
        if option is None:
            raise errors.missing_required_property("disableTasks")
        now = self.s.now()
        with self.s.lock:
            job = self._job(job_id)
            if job.state == "disabled":
                raise errors.BatchError(409, "JobDisabled", "The specified job is disabled.")
            if job.state != "active":
                raise errors.job_not_active()
            job.transition("disabling", now)
            for task in list(job.tasks.values()):
                self.s.dequeue(task)
                if task.state == "running" and option == "requeue":
                    lifecycle.requeue(self.s, task, now)
                    self.s.dequeue(task)
                elif task.state == "running" and option == "terminate":
                    lifecycle.end(self.s, task, now, lifecycle.TASK_ENDED_BY_USER)
            job.transition("disabled", now)
            self.s.save_job(job)
            self.s.wake()
            return job

    def enable(self, job_id: str) -> JobRecord:
        now = self.s.now()
        with self.s.lock:
            job = self._job(job_id)
            if job.state != "disabled":
                raise errors.BatchError(409, "OperationInvalidForCurrentState",
                                        "The specified job is not disabled.")
            job.transition("enabling", now)
            job.transition("active", now)
            for task in job.tasks.values():
                if task.state == "active":
                    self.s.enqueue(task)
            self.s.save_job(job)
            self.s.wake()
            return job

    def task_counts(self, job_id: str) -> dict[str, Any]:
        with self.s.lock:
            return self._job(job_id).index.counts()  # kept as tasks change (task_index.py)
