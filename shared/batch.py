"""Every Batch call the app makes, on the process's one `BatchClient`; reads come back as plain values.

Submit side (`SubmitBatch`): one call per upload in steady state (add task). Tasks go to the job of
their period (shared/job_periods.py). The pool and each period's job are created lazily and
idempotently the first time a process submits to them (PoolExists / JobExists count as success) and
the outcome is cached; a JobNotFound later (someone deleted the job, or it was retired and a late
upload of its period arrives) clears the cache and retries once. TaskExists is success too: a
duplicate trigger of the same blob version is a no-op.

Timer side (`TimerBatch`): our jobs (one List Jobs call), changed tasks since a watermark in each
($filter + $select, 1000 a page), task counts, job deletion, the pool and its nodes, and the pool
actions. A refused pool action raises `PoolActionRefused`
with the service's error code (409 PoolBeingResized, 503 TooManyEnableAutoScaleRequests...): the timer
logs it and the next tick decides again.

Resize, stop-resize and remove-nodes are sent as their documented REST operations through the client's
public `send_request`: the SDK's `begin_*` wrappers start a poller thread that GETs the pool every 5 s
until it is steady (minutes on the real service), which would keep a Functions worker busy after the
tick returned. One POST (202) is all the timer needs; the next tick observes the allocation state.

Throttling and transient failures are retried by the SDK pipeline; anything else surfaces as one of
the errors below, so the trigger fails and the host retries the invocation (then poisons it).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

from azure.batch import BatchClient
from azure.batch import models as batch_models
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.core.rest import HttpRequest

from . import batch_types
from .batch_types import (
    AddOutcome,
    BatchUnavailable,
    NodeView,
    PoolActionRefused,
    PoolNotProvisioned,
    PoolView,
    JobView,
    TaskCounts,
    TaskOrigin,
    TaskRejected,
    TaskSnapshot,
    error_code,
)
from .job_periods import JobPeriods
from .log import event, get_logger, scrub
from .settings import NodePriority

_log = get_logger("batch")

# The REST api-version azure-batch 15.1.0 sends (tests/integration/test_batch.py checks they agree).
API_VERSION = "2025-06-01"
_JSON = "application/json; odata=minimalmetadata"
# Fields the reconciler needs from list tasks ($select keeps pages small).
_TASK_FIELDS = ["id", "state", "stateTransitionTime", "creationTime", "executionInfo", "nodeInfo"]
_ORIGIN_FIELDS = ["id", "displayName", "creationTime", "outputFiles"]
_NODE_FIELDS = ["id", "state", "errors", "startTaskInfo"]
_PAGE = 1000           # the service's maximum maxresults for list tasks
_MAX_REMOVE = 100      # nodes per remove-nodes request


def odata_datetime(moment: datetime) -> str:
    """A $filter DateTime literal: DateTime'2024-05-01T00:00:00.0000000Z' (UTC)."""
    utc = moment.astimezone(timezone.utc)
    return f"DateTime'{utc.strftime('%Y-%m-%dT%H:%M:%S')}.{utc.microsecond:06d}0Z'"


class AzureBatch:
    """Both sides over one client. `pool_factory`/`job_factory` are only needed to submit."""

    def __init__(self, client: BatchClient, *, pool_id: str, jobs: JobPeriods,
                 pool_factory: Callable[[], batch_models.BatchPoolCreateOptions] | None = None,
                 job_factory: Callable[[str], batch_models.BatchJobCreateOptions] | None = None,
                 pool_managed_externally: bool = False, priority: NodePriority = NodePriority.DEDICATED,
                 autoscale_formula: str = "", autoscale_interval: timedelta = timedelta(minutes=5)) -> None:
        self._client = client
        self.pool_id = pool_id
        self.jobs = jobs
        self._pool_factory = pool_factory
        self._job_factory = job_factory
        self._pool_managed_externally = pool_managed_externally
        self._priority = priority
        self._formula = autoscale_formula
        self._interval = autoscale_interval
        self._pool_ready = False
        self._ready_jobs: set[str] = set()
        self._lock = threading.Lock()

    # -- submit -----------------------------------------------------------------------------------
    def add_task(self, task: batch_models.BatchTaskCreateOptions, job_id: str) -> AddOutcome:
        self._ensure_ready(job_id)
        try:
            return self._create_task(task, job_id)
        except ResourceNotFoundError as exc:
            if error_code(exc) not in ("JobNotFound", None):
                raise BatchUnavailable(f"create task failed: {error_code(exc)}") from exc
            # The cached 'job exists' went stale; recreate once, then give up to the host's retry.
            event(_log, logging.WARNING, "batch.job_missing", job_id=job_id, task_id=task.id)
            with self._lock:
                self._pool_ready = False
                self._ready_jobs.discard(job_id)
            self._ensure_ready(job_id)
            return self._create_task(task, job_id)

    def _create_task(self, task: batch_models.BatchTaskCreateOptions, job_id: str) -> AddOutcome:
        try:
            self._client.create_task(job_id, task)
            return AddOutcome.CREATED
        except ResourceExistsError as exc:
            if error_code(exc) == "TaskExists":
                return AddOutcome.ALREADY_EXISTS
            # JobCompleted / JobNotActive / JobBeingTerminated / JobDisabled: an operator's
            # action; retrying here cannot fix it.
            raise BatchUnavailable(f"create task refused: {error_code(exc)}") from exc
        except ResourceNotFoundError:
            raise
        except HttpResponseError as exc:
            if exc.status_code in (400, 413):
                # InvalidPropertyValue, RequestBodyTooLarge...: the error text can echo task
                # properties (URLs with a SAS), so only scrubbed text leaves here.
                detail = getattr(getattr(exc, "error", None), "message", None) or ""
                raise TaskRejected(error_code(exc), scrub(str(detail).splitlines()[0] if detail else "")) from exc
            raise BatchUnavailable(f"create task failed: HTTP {exc.status_code} {error_code(exc)}") from exc

    # -- the period jobs --------------------------------------------------------------------------------
    def our_jobs(self) -> list[JobView]:
        """Our jobs in the account, oldest period first: one List Jobs call ($select id, state)."""
        found = []
        for job in self._client.list_jobs(select=["id", "state"]):
            end = self.jobs.period_end(job.id or "")
            if end is not None:
                found.append(JobView(job.id or "", batch_types.enum_text(job.state) or "", end))
        return sorted(found, key=lambda view: (view.period_end, view.job_id))

    def delete_job(self, job_id: str) -> None:
        """Delete the job (and its tasks): one DELETE (202); the public begin_delete_job would poll for minutes."""
        with self._lock:
            self._ready_jobs.discard(job_id)
        try:
            self._send("DELETE", f"/jobs/{quote(job_id, safe='')}")
        except ResourceNotFoundError:
            return  # already gone
        except HttpResponseError as exc:
            if error_code(exc) == "JobBeingDeleted":
                return
            raise BatchUnavailable(f"delete job failed: HTTP {exc.status_code} {error_code(exc)}") from exc

    def terminate_task(self, job_id: str, task_id: str) -> bool:
        """Stop a queued or running task; False when it already completed or no longer exists.

        A terminated task completes with failureInfo TaskEnded and never uploads its outputs (their
        uploadCondition is tasksuccess), so a superseded version cannot overwrite a newer MP3."""
        try:
            self._client.terminate_task(job_id, task_id)
            return True
        except ResourceNotFoundError:  # TaskNotFound / JobNotFound: nothing left to stop
            return False
        except HttpResponseError as exc:
            if error_code(exc) == "TaskCompleted":
                return False
            raise BatchUnavailable(f"terminate task failed: HTTP {exc.status_code} {error_code(exc)}") from exc

    def _ensure_ready(self, job_id: str) -> None:
        if self._pool_ready and job_id in self._ready_jobs:
            return
        with self._lock:
            if not self._pool_ready:
                self._ensure_pool()
            if job_id not in self._ready_jobs:
                self._ensure_job(job_id)

    def _ensure_pool(self) -> None:
        if self._pool_managed_externally:
            try:
                self._client.get_pool(self.pool_id, select=["id"])
            except ResourceNotFoundError as exc:
                raise PoolNotProvisioned(
                    f"pool {self.pool_id!r} does not exist; with POOL_IDENTITY_RESOURCE_ID set the pool "
                    "(and its managed identity) must be created by the infrastructure deployment") from exc
            except HttpResponseError as exc:
                raise BatchUnavailable(f"get pool failed: {error_code(exc)}") from exc
        else:
            assert self._pool_factory is not None, "submitting needs a pool_factory"
            self._create("pool", lambda: self._client.create_pool(self._pool_factory()), "PoolExists")
        self._pool_ready = True

    def _ensure_job(self, job_id: str) -> None:
        assert self._job_factory is not None, "submitting needs a job_factory"
        factory = self._job_factory
        self._create("job", lambda: self._client.create_job(factory(job_id)), "JobExists", job_id=job_id)
        if len(self._ready_jobs) > 64:  # a long-lived worker sees a job per period: keep the set small
            self._ready_jobs.clear()
        self._ready_jobs.add(job_id)

    def _create(self, kind: str, call: Callable[[], None], exists_code: str, job_id: str | None = None) -> None:
        try:
            call()
            event(_log, logging.INFO, f"batch.{kind}_created", pool_id=self.pool_id, job_id=job_id)
        except ResourceExistsError as exc:
            if error_code(exc) != exists_code:  # e.g. PoolBeingDeleted
                raise BatchUnavailable(f"create {kind} refused: {error_code(exc)}") from exc
        except HttpResponseError as exc:
            raise BatchUnavailable(f"create {kind} failed: HTTP {exc.status_code} {error_code(exc)}") from exc

    # -- tasks, read by the timer ---------------------------------------------------------------------
    def task_change_pages(self, job_id: str, since: datetime | None,
                          token: str | None = None) -> Iterator[tuple[list[TaskSnapshot], str | None]]:
        """Pages (up to 1000 tasks) of the job's tasks whose state changed at or after `since` (every task when
        None), $select-ed, each with the continuation token of the next page (None after the last). `token`
        resumes a listing where an earlier call stopped. A job deleted meanwhile lists as empty."""
        task_filter = f"stateTransitionTime ge {odata_datetime(since)}" if since else None
        pages = self._client.list_tasks(job_id, filter=task_filter, select=_TASK_FIELDS,
                                        max_results=_PAGE).by_page(continuation_token=token)
        try:
            for page in pages:
                yield [batch_types.task_snapshot(task, job_id) for task in page], pages.continuation_token or None
        except ResourceNotFoundError:
            yield [], None

    def task_origin(self, job_id: str, task_id: str) -> TaskOrigin | None:
        try:
            return batch_types.task_origin(self._client.get_task(job_id, task_id, select=_ORIGIN_FIELDS))
        except ResourceNotFoundError:
            return None

    def task(self, job_id: str, task_id: str) -> TaskSnapshot | None:
        """One task as the reconciler reads it, or None when it (or its job) no longer exists."""
        try:
            return batch_types.task_snapshot(self._client.get_task(job_id, task_id, select=_TASK_FIELDS), job_id)
        except ResourceNotFoundError:
            return None

    def task_state(self, job_id: str, task_id: str) -> str | None:
        """The task's state ('active', 'running', 'completed'...), or None when it (or the job) is gone."""
        try:
            return batch_types.enum_text(self._client.get_task(job_id, task_id, select=["id", "state"]).state)
        except ResourceNotFoundError:
            return None

    def task_counts(self, job_ids: list[str]) -> TaskCounts | None:
        """The counts of these jobs added up; None when none of them exists."""
        found = [counts for counts in (self.job_task_counts(job_id) for job_id in job_ids) if counts is not None]
        if not found:
            return None
        return batch_types.add_counts(batch_types.task_counts(c.task_counts) for c in found)

    def job_task_counts(self, job_id: str) -> batch_models.BatchTaskCountsResult | None:
        """Task and slot counts of one job (None: no such job); the operator CLI shows both."""
        try:
            return self._client.get_job_task_counts(job_id)
        except ResourceNotFoundError:
            return None

    def delete_task(self, job_id: str, task_id: str) -> bool:
        """True when the task is gone (deleted now, or already)."""
        try:
            self._client.delete_task(job_id, task_id)
        except ResourceNotFoundError:
            pass
        return True

    # -- pool -----------------------------------------------------------------------------------------
    def pool(self) -> batch_models.BatchPool | None:
        """The whole pool resource (None: not created yet); the operator CLI reports its fields."""
        try:
            return self._client.get_pool(self.pool_id)
        except ResourceNotFoundError:
            return None

    def get_pool(self) -> PoolView | None:
        pool = self.pool()
        return batch_types.pool_view(pool) if pool is not None else None

    def node_counts(self) -> batch_models.BatchPoolNodeCounts | None:
        pool_filter = f"poolId eq '{self.pool_id}'"  # pool ids are [A-Za-z0-9_-]: no quoting needed
        return next((c for c in self._client.list_pool_node_counts(filter=pool_filter) if c.pool_id == self.pool_id),
                    None)

    def with_nodes(self, view: PoolView) -> tuple[PoolView, tuple[NodeView, ...]]:
        """Adds the nodes (one call; skipped for an empty pool) and their unusable ones to the view."""
        if view.snapshot.current_nodes == 0 and view.snapshot.target_nodes == 0:
            return view, ()
        nodes = tuple(batch_types.node_view(n) for n in self._client.list_nodes(self.pool_id, select=_NODE_FIELDS))
        return batch_types.mark_bad_nodes(view, nodes), nodes

    def disable_autoscale(self) -> None:
        self._pool_call("disable_autoscale", lambda: self._client.disable_pool_auto_scale(self.pool_id))

    def enable_autoscale(self) -> None:
        options = batch_models.BatchPoolEnableAutoScaleOptions(
            auto_scale_formula=self._formula, auto_scale_evaluation_interval=self._interval)
        # No pipeline retries: the service answers 503 TooManyEnableAutoScaleRequests inside its 30 s rule, and
        # retrying that with backoff would only stall the tick; the next tick tries again.
        self._pool_call("enable_autoscale", lambda: self._client.enable_pool_auto_scale(
            self.pool_id, options, retry_total=0))

    def resize(self, target: int) -> None:
        spot = self._priority is NodePriority.SPOT
        # Never kill running work on scale-in: nodes leave once their tasks finish.
        body = {"targetDedicatedNodes": 0 if spot else target, "targetLowPriorityNodes": target if spot else 0,
                "nodeDeallocationOption": "taskcompletion"}
        self._pool_call("resize", lambda: self._post_to_pool("resize", body))

    def stop_resize(self) -> None:
        self._pool_call("stop_resize", lambda: self._post_to_pool("stopresize", None))

    def remove_nodes(self, node_ids: tuple[str, ...], deallocation: str = "requeue") -> None:
        """Remove up to 100 nodes (the service's per-request limit; the pool then resizes, so any rest waits
        for a later tick). Requeue (unusable nodes): a task on a removed node goes back to the queue, it is
        not lost; taskcompletion (idle nodes): a task that started on one meanwhile finishes first."""
        body = {"nodeList": list(node_ids[:_MAX_REMOVE]), "nodeDeallocationOption": deallocation}
        self._pool_call("remove_nodes", lambda: self._post_to_pool("removenodes", body))

    def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> None:
        """A documented REST call (`path` under the account endpoint) through the client's pipeline (auth,
        retries, logging); any answer but 202 raises like the SDK's own operations do."""
        headers = {"accept": "application/json", **({"content-type": _JSON} if body is not None else {})}
        request = HttpRequest(method, path, params={"api-version": API_VERSION}, json=body, headers=headers)
        response = self._client.send_request(request)
        if response.status_code != 202:
            try:
                model = batch_models.BatchError(response.json())
            except ValueError:
                model = None
            raise HttpResponseError(response=response, model=model)

    def _post_to_pool(self, operation: str, body: dict[str, Any] | None) -> None:
        self._send("POST", f"/pools/{quote(self.pool_id, safe='')}/{operation}", body)

    def _pool_call(self, operation: str, call: Callable[[], None]) -> None:
        try:
            call()
        except HttpResponseError as exc:
            code = error_code(exc)
            event(_log, logging.WARNING, "pool.action_refused", pool_id=self.pool_id, operation=operation,
                  status=exc.status_code, code=code)
            raise PoolActionRefused(operation, code, exc.status_code) from exc
