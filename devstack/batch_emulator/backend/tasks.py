"""Task operations: add, add collection, list (filter/select/paging), get, update, terminate, reactivate, delete."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from .. import errors, ids, odata
from ..executor import resource_file_problem, set_aside, task_directory
from ..timeutil import UNLIMITED_DURATION, iso
from . import lifecycle, validate as v
from .records import JobRecord, TaskRecord
from .state import State

TASK_PROPERTIES = ("id", "displayName", "url", "eTag", "lastModified", "creationTime", "exitConditions", "state",
                   "stateTransitionTime", "previousState", "previousStateTransitionTime", "commandLine",
                   "containerSettings", "resourceFiles", "outputFiles", "environmentSettings", "affinityInfo",
                   "constraints", "requiredSlots", "userIdentity", "executionInfo", "nodeInfo",
                   "multiInstanceSettings", "stats", "dependsOn", "applicationPackageReferences")
MAX_TASKS_PER_COLLECTION = 100
MAX_REQUEST_BYTES = 1024 * 1024  # addtaskcollection: serialized body must be < 1 MB (RequestBodyTooLarge)
UPLOAD_CONDITIONS = ("tasksuccess", "taskfailure", "taskcompletion")
DEFAULT_USER_IDENTITY = {"autoUser": {"scope": "task", "elevationLevel": "nonadmin"}}  # SPEC Tasks_ListTasks example


def _check_output_files(body: dict[str, Any]) -> None:
    for i, spec in enumerate(v.array(body, "outputFiles") or []):
        path = f"outputFiles[{i}]"
        if not isinstance(spec, dict):
            raise errors.invalid_property_value(path, "(value)", "Each output file must be an object.")
        v.string(spec, "filePattern", required=True, path=f"{path}.filePattern")
        destination = v.obj(spec, "destination", required=True, path=f"{path}.destination")
        container = v.obj(destination, "container", required=True, path=f"{path}.destination.container")
        v.string(container, "containerUrl", required=True, path=f"{path}.destination.container.containerUrl")
        options = v.obj(spec, "uploadOptions", required=True, path=f"{path}.uploadOptions")
        condition = v.string(options, "uploadCondition", required=True, path=f"{path}.uploadOptions.uploadCondition")
        if condition.lower() not in UPLOAD_CONDITIONS:
            raise errors.invalid_property_value(f"{path}.uploadOptions.uploadCondition", condition,
                                                f"Allowed values: {', '.join(UPLOAD_CONDITIONS)}.")


def _check_resource_files(body: dict[str, Any]) -> None:
    for i, rf in enumerate(v.array(body, "resourceFiles") or []):
        if not isinstance(rf, dict):
            raise errors.invalid_property_value(f"resourceFiles[{i}]", "(value)", "Each resource file must be an object.")
        problem = resource_file_problem(rf)
        if problem:
            raise errors.invalid_property_value(f"resourceFiles[{i}]", "(resource file)", problem)


def build_task_doc(state: State, job: JobRecord, body: Any, now: datetime) -> dict[str, Any]:
    """Validate one task-create body and return the new task's wire document (raises BatchError)."""
    body = v.body_object(body)
    task_id = ids.validate(body.get("id"))
    v.string(body, "commandLine", required=True)
    v.string(body, "displayName")
    if body.get("multiInstanceSettings") is not None:
        raise errors.BatchError(501, "NotImplemented", "The Batch emulator does not run multi-instance tasks.",
                                [("PropertyName", "multiInstanceSettings")])
    if body.get("containerSettings") is not None:
        raise errors.BatchError(501, "NotImplemented", "The Batch emulator does not run container tasks.",
                                [("PropertyName", "containerSettings")])
    _check_resource_files(body)
    _check_output_files(body)
    v.name_value_pairs(body, "environmentSettings")
    required_slots = v.integer(body, "requiredSlots", default=1, minimum=1)
    c = v.obj(body, "constraints") or {}
    v.duration(c, "maxWallClockTime", path="constraints.maxWallClockTime")
    v.duration(c, "retentionTime", path="constraints.retentionTime")
    retries = v.integer(c, "maxTaskRetryCount", minimum=-1, path="constraints.maxTaskRetryCount")
    if body.get("dependsOn") is not None:
        if not job.doc.get("usesTaskDependencies"):
            raise errors.BatchError(400, "TaskDependenciesNotSpecifiedOnJob",
                                    "A task was specified as depending on other tasks, but the job did not specify "
                                    "that it would use task dependencies.")
        deps = v.obj(body, "dependsOn") or {}
        for i, dep in enumerate(v.array(deps, "taskIds", path="dependsOn.taskIds") or []):
            ids.validate(dep, f"dependsOn.taskIds[{i}]")
        for i, rng in enumerate(v.array(deps, "taskIdRanges", path="dependsOn.taskIdRanges") or []):
            if not isinstance(rng, dict):
                raise errors.invalid_property_value(f"dependsOn.taskIdRanges[{i}]", "(value)", "Must be an object.")
            start = v.integer(rng, "start", minimum=0, path=f"dependsOn.taskIdRanges[{i}].start")
            end = v.integer(rng, "end", minimum=0, path=f"dependsOn.taskIdRanges[{i}].end")
            if start is None or end is None or end < start:
                raise errors.invalid_property_value(f"dependsOn.taskIdRanges[{i}]", "(range)", "Need start <= end.")
    job_constraints = job.doc.get("constraints") or {}
    constraints = {
        "maxWallClockTime": c.get("maxWallClockTime") or UNLIMITED_DURATION,
        # Unset retentionTime is echoed as the service's "unlimited" value; 7 days apply (SDK docstring).
        "retentionTime": c.get("retentionTime") or UNLIMITED_DURATION,
        "maxTaskRetryCount": retries if retries is not None else job_constraints.get("maxTaskRetryCount", 0),
    }
    doc: dict[str, Any] = dict(body)
    doc.update({
        "id": task_id,
        "url": f"{state.account_url}/jobs/{job.id}/tasks/{task_id}",
        "creationTime": iso(now),
        "state": "active",
        "stateTransitionTime": iso(now),
        "constraints": constraints,
        "requiredSlots": required_slots,
        "userIdentity": body.get("userIdentity") or DEFAULT_USER_IDENTITY,
        "executionInfo": {"retryCount": 0, "requeueCount": 0},
    })
    return doc


def _check_job_accepts_tasks(job: JobRecord) -> None:
    if job.state == "completed":
        raise errors.job_completed()
    if job.state == "terminating":
        raise errors.job_being_terminated()
    if job.state == "deleting":
        raise errors.job_being_deleted()


class TaskService:
    def __init__(self, state: State) -> None:
        self.s = state

    def _job(self, job_id: str) -> JobRecord:
        return self.s.existing_job(job_id)

    def _task(self, job: JobRecord, task_id: str) -> TaskRecord:
        task = job.tasks.get(ids.key(task_id))
        if task is None:
            raise errors.task_not_found()
        return task

    def _insert(self, job: JobRecord, doc: dict[str, Any], now: datetime) -> TaskRecord:
        task = TaskRecord(job_key=job.key, doc=doc, sys={"seq": self.s.next_seq()})
        task.touch(now)
        job.tasks[task.key] = task
        if job.state == "active":
            self.s.enqueue(task)
        return task

    def create(self, job_id: str, body: Any) -> TaskRecord:
        now = self.s.now()
        with self.s.lock:
            job = self._job(job_id)
            _check_job_accepts_tasks(job)
            doc = build_task_doc(self.s, job, body, now)
            if ids.key(doc["id"]) in job.tasks:
                raise errors.task_exists()
            task = self._insert(job, doc, now)
            self.s.save_task(task)
            self.s.wake()
            return task

    def create_collection(self, job_id: str, body: Any, body_bytes: int, request_id: str) -> list[dict[str, Any]]:
        """addtaskcollection: per-task results; TaskExists and invalid tasks are `clienterror` results."""
        if body_bytes >= MAX_REQUEST_BYTES:
            raise errors.request_body_too_large(f"The request body is {body_bytes} bytes; the limit is 1 MB.")
        body = v.body_object(body)
        items = body.get("value")
        if not isinstance(items, list):
            raise errors.missing_required_property("value")
        if len(items) > MAX_TASKS_PER_COLLECTION:
            raise errors.request_body_too_large(
                f"The collection has {len(items)} tasks; at most {MAX_TASKS_PER_COLLECTION} can be added per request.")
        now = self.s.now()
        results: list[dict[str, Any]] = []
        created: list[TaskRecord] = []
        with self.s.lock:
            job = self._job(job_id)
            _check_job_accepts_tasks(job)
            for item in items:
                task_id = item.get("id") if isinstance(item, dict) else None
                try:
                    doc = build_task_doc(self.s, job, item, now)
                    if ids.key(doc["id"]) in job.tasks:
                        raise errors.task_exists()
                except errors.BatchError as exc:
                    if exc.status >= 500 and exc.status != 501:
                        status = "servererror"
                    else:
                        status = "clienterror"
                    results.append({"status": status, "taskId": task_id if isinstance(task_id, str) else "",
                                    "error": exc.as_result_error(request_id, now)})
                    continue
                task = self._insert(job, doc, now)
                created.append(task)
                results.append({"status": "success", "taskId": task.id, "eTag": task.doc["eTag"],
                                "lastModified": task.doc["lastModified"], "location": task.doc["url"]})
            if created:
                with self.s.store.batch():
                    self.s.save_tasks(created)
                self.s.wake()
        return results

    def get(self, job_id: str, task_id: str) -> TaskRecord:
        with self.s.lock:
            return self._task(self._job(job_id), task_id)

    def list(self, job_id: str, filter_text: str | None, select: str | None, max_results: int,
             after: int | None) -> odata.Page:
        predicate = odata.compile_filter(filter_text, odata.TASK_FILTERS)
        fields = odata.parse_select(select, TASK_PROPERTIES)
        hints = odata.shortcuts(filter_text)
        with self.s.lock:
            job = self._job(job_id)
            # Candidates from the job's indexes (a superset; the filter still decides), in creation order.
            rows = job.index.candidates(after, hints.since, hints.before, hints.state)
            return odata.paginate(rows, predicate, after, max_results, fields)

    def update(self, job_id: str, task_id: str, body: Any) -> TaskRecord:
        """PUT /jobs/{j}/tasks/{t}: only constraints can be updated."""
        body = v.body_object(body)
        for name in body:
            if name != "constraints":
                raise errors.invalid_property_value(name, "(value)", "Only constraints can be updated on a task.")
        c = v.obj(body, "constraints") or {}
        v.duration(c, "maxWallClockTime", path="constraints.maxWallClockTime")
        v.duration(c, "retentionTime", path="constraints.retentionTime")
        v.integer(c, "maxTaskRetryCount", minimum=-1, path="constraints.maxTaskRetryCount")
        now = self.s.now()
        with self.s.lock:
            task = self._task(self._job(job_id), task_id)
            if task.state == "completed":
                raise errors.task_completed()
            merged = dict(task.doc.get("constraints") or {})
            merged.update({k: val for k, val in c.items() if val is not None})
            task.set(constraints=merged)
            task.touch(now)
            self.s.save_task(task)
            return task

    def terminate(self, job_id: str, task_id: str) -> TaskRecord:
        now = self.s.now()
        with self.s.lock:
            task = self._task(self._job(job_id), task_id)
            if task.state == "completed":
                raise errors.task_completed()
            # Recorded immediately; the process (if any) is killed through its cancel event by detach().
            lifecycle.end(self.s, task, now, lifecycle.TASK_ENDED_BY_USER)
            self.s.wake()
            return task

    def reactivate(self, job_id: str, task_id: str) -> TaskRecord:
        now = self.s.now()
        with self.s.lock:
            job = self._job(job_id)
            task = self._task(job, task_id)
            if task.state != "completed":
                raise errors.task_not_completed()
            if (task.doc.get("executionInfo") or {}).get("result") == "success":
                raise errors.task_succeeded()
            _check_job_accepts_tasks(job)
            # "Reactivation makes a Task eligible to be retried again up to its maximum retry count" (SDK doc).
            task.set(executionInfo={"retryCount": 0, "requeueCount": 0}, nodeInfo=None)
            task.sys.pop("completedAt", None)
            task.transition("active", now)
            if job.state == "active":
                self.s.enqueue(task)
            self.s.save_task(task)
            self.s.wake()
            return task

    def delete(self, job_id: str, task_id: str) -> TaskRecord:
        now = self.s.now()
        with self.s.lock:
            task = self._task(self._job(job_id), task_id)
            if task.state == "running":
                lifecycle.detach(self.s, task, now)
            self.s.forget_task(task)
            info = task.doc.get("nodeInfo") or {}
            if info.get("nodeId"):  # the task's files go with it
                job = self._job(job_id)
                self.s.trash.append(set_aside(task_directory(
                    self.s.node_dir(info["poolId"].lower(), info["nodeId"]), job.id, task.id)))
            self.s.wake()
            return task
