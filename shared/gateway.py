"""The one seam between the app and Azure Batch: a small protocol and its azure-batch implementation.

Steady state costs one call per upload (create task). The pool and job are created lazily and
idempotently the first time a process submits (PoolExists / JobExists count as success) and the
outcome is cached; a JobNotFound later (someone deleted the job) clears the cache and retries
once. TaskExists is success too: a duplicate trigger of the same blob version is a no-op.
Throttling and transient failures are retried by the SDK pipeline; anything else surfaces as a
`BatchUnavailable` so the trigger fails and the host retries the invocation (then poisons it).
"""
from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol

from azure.batch import BatchClient
from azure.batch import models as batch_models
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from .log import event, get_logger, scrub

_log = get_logger("gateway")

# Fields the reconciler needs from list tasks ($select keeps pages small).
TASK_CHANGE_FIELDS = ["id", "state", "stateTransitionTime", "creationTime", "executionInfo", "nodeInfo"]
LIST_PAGE_SIZE = 1000  # the service's maximum maxresults for list tasks


class AddOutcome(enum.Enum):
    CREATED = "created"
    ALREADY_EXISTS = "already_exists"


class BatchUnavailable(RuntimeError):
    """Batch refused or failed an operation the app cannot resolve itself (after SDK retries)."""


class TaskRejected(Exception):
    """Batch refused this task as invalid (400/413): deterministic, so retrying cannot help."""

    def __init__(self, code: str | None, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class PoolNotProvisioned(BatchUnavailable):
    """Identity mode: the pool (with its managed identity) must come from infrastructure code."""


@dataclass(frozen=True)
class TaskFailure:
    category: str | None
    code: str | None
    message: str | None


@dataclass(frozen=True)
class TaskSnapshot:
    """What the reconciler needs of one task; plain values, no SDK types."""

    task_id: str
    state: str                        # active | preparing | running | completed
    state_transition_time: datetime | None
    creation_time: datetime | None
    exit_code: int | None
    result: str | None                # success | failure (completed tasks)
    failure: TaskFailure | None
    retry_count: int
    requeue_count: int
    node_id: str | None
    start_time: datetime | None
    end_time: datetime | None


@dataclass(frozen=True)
class TaskCounts:
    active: int
    running: int
    completed: int
    succeeded: int
    failed: int


class BatchGateway(Protocol):
    def add_task(self, task: batch_models.BatchTaskCreateOptions) -> AddOutcome: ...

    def ensure_pool(self) -> None: ...

    def ensure_job(self) -> None: ...

    def list_task_changes(self, since: datetime | None) -> Iterator[TaskSnapshot]: ...

    def task_counts(self) -> TaskCounts: ...

    def terminate_task(self, task_id: str) -> bool: ...


def error_code(exc: HttpResponseError) -> str | None:
    """The service's error code (e.g. 'TaskExists') from a Batch error body."""
    for source in (getattr(exc, "error", None), getattr(exc, "model", None)):
        code = getattr(source, "code", None)
        if code:
            return str(code)
    return None


def odata_datetime(moment: datetime) -> str:
    """A $filter DateTime literal: DateTime'2024-05-01T00:00:00.0000000Z' (UTC)."""
    utc = moment.astimezone(timezone.utc)
    return f"DateTime'{utc.strftime('%Y-%m-%dT%H:%M:%S')}.{utc.microsecond:06d}0Z'"


class AzureBatchGateway:
    def __init__(self, client: BatchClient, *, pool_id: str, job_id: str,
                 pool_factory: Callable[[], batch_models.BatchPoolCreateOptions],
                 job_factory: Callable[[], batch_models.BatchJobCreateOptions],
                 pool_managed_externally: bool = False) -> None:
        self._client = client
        self._pool_id = pool_id
        self._job_id = job_id
        self._pool_factory = pool_factory
        self._job_factory = job_factory
        self._pool_managed_externally = pool_managed_externally
        self._pool_ready = False
        self._job_ready = False
        self._lock = threading.Lock()

    # -- submit ---------------------------------------------------------------------------
    def add_task(self, task: batch_models.BatchTaskCreateOptions) -> AddOutcome:
        self._ensure_ready()
        try:
            return self._create_task(task)
        except ResourceNotFoundError as exc:
            if error_code(exc) not in ("JobNotFound", None):
                raise BatchUnavailable(f"create task failed: {error_code(exc)}") from exc
            # The cached 'job exists' went stale; recreate once, then give up to the host's retry.
            event(_log, logging.WARNING, "batch.job_missing", job_id=self._job_id, task_id=task.id)
            with self._lock:
                self._pool_ready = self._job_ready = False
            self._ensure_ready()
            return self._create_task(task)

    def _create_task(self, task: batch_models.BatchTaskCreateOptions) -> AddOutcome:
        try:
            self._client.create_task(self._job_id, task)
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

    def _ensure_ready(self) -> None:
        if self._pool_ready and self._job_ready:
            return
        with self._lock:
            if not self._pool_ready:
                self._ensure_pool_locked()
            if not self._job_ready:
                self._ensure_job_locked()

    # -- pool and job -----------------------------------------------------------------------
    def ensure_pool(self) -> None:
        with self._lock:
            self._ensure_pool_locked()

    def ensure_job(self) -> None:
        with self._lock:
            self._ensure_job_locked()

    def _ensure_pool_locked(self) -> None:
        if self._pool_managed_externally:
            try:
                self._client.get_pool(self._pool_id, select=["id"])
            except ResourceNotFoundError as exc:
                raise PoolNotProvisioned(
                    f"pool {self._pool_id!r} does not exist; with POOL_IDENTITY_RESOURCE_ID set the pool "
                    "(and its managed identity) must be created by the infrastructure deployment") from exc
            except HttpResponseError as exc:
                raise BatchUnavailable(f"get pool failed: {error_code(exc)}") from exc
            self._pool_ready = True
            return
        try:
            self._client.create_pool(self._pool_factory())
            event(_log, logging.INFO, "batch.pool_created", pool_id=self._pool_id)
        except ResourceExistsError as exc:
            if error_code(exc) != "PoolExists":  # e.g. PoolBeingDeleted
                raise BatchUnavailable(f"create pool refused: {error_code(exc)}") from exc
        except HttpResponseError as exc:
            raise BatchUnavailable(f"create pool failed: HTTP {exc.status_code} {error_code(exc)}") from exc
        self._pool_ready = True

    def _ensure_job_locked(self) -> None:
        try:
            self._client.create_job(self._job_factory())
            event(_log, logging.INFO, "batch.job_created", job_id=self._job_id, pool_id=self._pool_id)
        except ResourceExistsError as exc:
            if error_code(exc) != "JobExists":
                raise BatchUnavailable(f"create job refused: {error_code(exc)}") from exc
        except HttpResponseError as exc:
            raise BatchUnavailable(f"create job failed: HTTP {exc.status_code} {error_code(exc)}") from exc
        self._job_ready = True

    def terminate_task(self, task_id: str) -> bool:
        """End a queued or running task; False when it had already completed or no longer exists.

        A terminated task completes with failureInfo TaskEnded and never uploads its outputs (their
        uploadCondition is tasksuccess), so a superseded version cannot overwrite a newer MP3."""
        try:
            self._client.terminate_task(self._job_id, task_id)
            return True
        except ResourceNotFoundError:  # TaskNotFound / JobNotFound: nothing left to stop
            return False
        except HttpResponseError as exc:
            if error_code(exc) == "TaskCompleted":
                return False
            raise BatchUnavailable(f"terminate task failed: HTTP {exc.status_code} {error_code(exc)}") from exc

    # -- reading state (the reconciler, issue 5) -----------------------------------------------
    def list_task_changes(self, since: datetime | None) -> Iterator[TaskSnapshot]:
        """Tasks whose state changed at or after `since` (all when None), paged by the SDK."""
        task_filter = f"stateTransitionTime ge {odata_datetime(since)}" if since else None
        for task in self._client.list_tasks(self._job_id, filter=task_filter, select=TASK_CHANGE_FIELDS,
                                            max_results=LIST_PAGE_SIZE):
            yield snapshot(task)

    def task_counts(self) -> TaskCounts:
        counts = self._client.get_job_task_counts(self._job_id).task_counts
        return TaskCounts(active=counts.active, running=counts.running, completed=counts.completed,
                          succeeded=counts.succeeded, failed=counts.failed)


def snapshot(task: batch_models.BatchTask) -> TaskSnapshot:
    info = task.execution_info
    failure = None
    if info is not None and info.failure_info is not None:
        failure = TaskFailure(category=_text(info.failure_info.category), code=info.failure_info.code,
                              message=info.failure_info.message)
    return TaskSnapshot(
        task_id=task.id or "",
        state=_text(task.state) or "",
        state_transition_time=task.state_transition_time,
        creation_time=task.creation_time,
        exit_code=info.exit_code if info else None,
        result=_text(info.result) if info else None,
        failure=failure,
        retry_count=(info.retry_count or 0) if info else 0,
        requeue_count=(info.requeue_count or 0) if info else 0,
        node_id=task.node_info.node_id if task.node_info else None,
        start_time=info.start_time if info else None,
        end_time=info.end_time if info else None,
    )


def _text(value: object) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value)).lower()
