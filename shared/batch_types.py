"""The Batch boundary's types: what the app reads from Batch as plain values (tasks, task counts, the
pool and its nodes), and the errors Batch calls raise.

`shared/batch.py` converts SDK models into these values, so reconcile, scaling and the status row never
see an SDK type (and their tests never need one).
"""
from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from azure.batch import models as batch_models
from azure.core.exceptions import HttpResponseError

from .scaling import Allocation, PoolSnapshot
from .task_spec import META_SOURCE_CONTAINER, META_SOURCE_ETAG, OUTPUT_FILE

BAD_NODE_STATES = frozenset({"starttaskfailed", "unusable"})


class AddOutcome(enum.Enum):
    CREATED = "created"
    ALREADY_EXISTS = "already_exists"


class BatchUnavailable(RuntimeError):
    """Batch refused or failed an operation the app cannot resolve itself (after SDK retries)."""


class PoolNotProvisioned(BatchUnavailable):
    """Identity mode: the pool (with its managed identity) must come from infrastructure code."""


class TaskRejected(Exception):
    """Batch refused this task as invalid (400/413): deterministic, so retrying cannot help."""

    def __init__(self, code: str | None, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class PoolActionRefused(RuntimeError):
    """Batch refused a pool operation; `code` is its error code (e.g. PoolBeingResized)."""

    def __init__(self, operation: str, code: str | None, status: int | None) -> None:
        super().__init__(f"{operation} refused: HTTP {status} {code}")
        self.operation = operation
        self.code = code
        self.status = status


def error_code(exc: HttpResponseError) -> str | None:
    """The service's error code (e.g. 'TaskExists') from a Batch error body."""
    for source in (getattr(exc, "error", None), getattr(exc, "model", None)):
        code = getattr(source, "code", None)
        if code:
            return str(code)
    return None


@dataclass(frozen=True)
class TaskFailure:
    category: str | None
    code: str | None
    message: str | None


@dataclass(frozen=True)
class TaskSnapshot:
    """What the reconciler needs of one task."""

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
    job_id: str = ""                  # the job it was listed or read in


@dataclass(frozen=True)
class TaskCounts:
    active: int
    running: int
    completed: int
    succeeded: int
    failed: int


@dataclass(frozen=True)
class TaskOrigin:
    """Where an adopted task came from (read from the task itself: the ledger never saw it)."""

    task_id: str
    input_name: str | None
    input_container: str | None
    input_etag: str | None
    output_name: str | None
    creation_time: datetime | None


@dataclass(frozen=True)
class PoolError:
    source: str   # "resize" | "autoscale" | "node"
    code: str | None
    message: str | None


@dataclass(frozen=True)
class NodeView:
    node_id: str
    state: str
    error: str | None  # first node error or start-task failure, for the status row


@dataclass(frozen=True)
class PoolView:
    snapshot: PoolSnapshot
    errors: tuple[PoolError, ...]
    autoscale_results: str | None  # the last formula evaluation's "$TargetDedicatedNodes=..;" text


def enum_text(value: object) -> str | None:
    """An SDK enum (or plain string) as lowercase text."""
    if value is None:
        return None
    return str(getattr(value, "value", value)).lower()


def task_snapshot(task: batch_models.BatchTask, job_id: str = "") -> TaskSnapshot:
    info = task.execution_info
    failure = None
    if info is not None and info.failure_info is not None:
        failure = TaskFailure(category=enum_text(info.failure_info.category), code=info.failure_info.code,
                              message=info.failure_info.message)
    return TaskSnapshot(
        task_id=task.id or "",
        state=enum_text(task.state) or "",
        state_transition_time=task.state_transition_time,
        creation_time=task.creation_time,
        exit_code=info.exit_code if info else None,
        result=enum_text(info.result) if info else None,
        failure=failure,
        retry_count=(info.retry_count or 0) if info else 0,
        requeue_count=(info.requeue_count or 0) if info else 0,
        node_id=task.node_info.node_id if task.node_info else None,
        start_time=info.start_time if info else None,
        end_time=info.end_time if info else None,
        job_id=job_id,
    )


def task_counts(counts: batch_models.BatchTaskCounts) -> TaskCounts:
    return TaskCounts(active=counts.active, running=counts.running, completed=counts.completed,
                      succeeded=counts.succeeded, failed=counts.failed)


def add_counts(counts: Iterable[TaskCounts]) -> TaskCounts:
    total = TaskCounts(0, 0, 0, 0, 0)
    for c in counts:
        total = TaskCounts(total.active + c.active, total.running + c.running, total.completed + c.completed,
                           total.succeeded + c.succeeded, total.failed + c.failed)
    return total


@dataclass(frozen=True)
class JobView:
    """One of our period jobs as List Jobs shows it."""

    job_id: str
    state: str              # active | disabling | disabled | enabling | terminating | completed | deleting
    period_end: datetime    # shared/job_periods.py (the old standing job: long ago)


def task_origin(task: batch_models.BatchTask) -> TaskOrigin:
    """The input's name is the task's display name (task_spec sets it); container and ETag ride on the
    MP3's upload headers as blob metadata; the output name is that output file's destination path."""
    container = etag = output = None
    for out in task.output_files or []:
        if out.file_pattern != OUTPUT_FILE or out.destination is None or out.destination.container is None:
            continue
        output = out.destination.container.path
        for header in out.destination.container.upload_headers or []:
            if header.name == f"x-ms-meta-{META_SOURCE_CONTAINER}":
                container = header.value
            elif header.name == f"x-ms-meta-{META_SOURCE_ETAG}":
                etag = header.value
    return TaskOrigin(task_id=task.id or "", input_name=task.display_name, input_container=container,
                      input_etag=etag, output_name=output, creation_time=task.creation_time)


def pool_view(pool: batch_models.BatchPool) -> PoolView:
    snap = PoolSnapshot(
        allocation=Allocation(enum_text(pool.allocation_state) or "steady"),
        autoscale_enabled=bool(pool.enable_auto_scale),
        current_nodes=(pool.current_dedicated_nodes or 0) + (pool.current_low_priority_nodes or 0),
        target_nodes=(pool.target_dedicated_nodes or 0) + (pool.target_low_priority_nodes or 0),
        task_slots_per_node=pool.task_slots_per_node or 1,
    )
    errors = [PoolError("resize", e.code, e.message) for e in (pool.resize_errors or [])]
    run = pool.auto_scale_run
    if run is not None and run.error is not None:
        errors.append(PoolError("autoscale", run.error.code, run.error.message))
    return PoolView(snap, tuple(errors), run.results if run is not None else None)


def node_view(node: batch_models.BatchNode) -> NodeView:
    error = None
    if node.errors:
        first = node.errors[0]
        error = f"{first.code}: {first.message}" if first.message else first.code
    elif node.start_task_info is not None and node.start_task_info.failure_info is not None:
        failure = node.start_task_info.failure_info
        error = f"start task {failure.code}: {failure.message}" if failure.message else f"start task {failure.code}"
    return NodeView(node_id=node.id or "", state=enum_text(node.state) or "unknown", error=error)


def mark_bad_nodes(view: PoolView, nodes: tuple[NodeView, ...]) -> PoolView:
    """The view with its unusable nodes named: as errors for the status row, as ids for the scaler."""
    bad = tuple(n for n in nodes if n.state in BAD_NODE_STATES)
    node_errors = tuple(PoolError("node", n.state, f"{n.node_id}: {n.error}" if n.error else n.node_id)
                        for n in bad)
    snap = view.snapshot
    snap = PoolSnapshot(allocation=snap.allocation, autoscale_enabled=snap.autoscale_enabled,
                        current_nodes=snap.current_nodes, target_nodes=snap.target_nodes,
                        task_slots_per_node=snap.task_slots_per_node, bad_node_ids=tuple(n.node_id for n in bad),
                        idle_node_ids=tuple(n.node_id for n in nodes if n.state == "idle"))
    return PoolView(snap, view.errors + node_errors, view.autoscale_results)


# -- what the submit path and the timer need of Batch (shared/batch.AzureBatch implements both) ------

class SubmitBatch(Protocol):
    def add_task(self, task: batch_models.BatchTaskCreateOptions, job_id: str) -> AddOutcome: ...

    def terminate_task(self, job_id: str, task_id: str) -> bool: ...


class TaskLookup(Protocol):
    """One task by job and id (the liveness audit, the newest-wins check)."""

    def task(self, job_id: str, task_id: str) -> TaskSnapshot | None: ...


class TimerBatch(Protocol):
    def our_jobs(self) -> list[JobView]: ...

    def delete_job(self, job_id: str) -> None: ...

    def task_change_pages(self, job_id: str, since: datetime | None,
                          token: str | None = None) -> Iterator[tuple[list[TaskSnapshot], str | None]]: ...

    def task_origin(self, job_id: str, task_id: str) -> TaskOrigin | None: ...

    def task_counts(self, job_ids: list[str]) -> TaskCounts | None: ...

    def delete_task(self, job_id: str, task_id: str) -> bool: ...

    def get_pool(self) -> PoolView | None: ...

    def with_nodes(self, view: PoolView) -> tuple[PoolView, tuple[NodeView, ...]]: ...

    def disable_autoscale(self) -> None: ...

    def enable_autoscale(self) -> None: ...

    def resize(self, target: int) -> None: ...

    def stop_resize(self) -> None: ...

    def remove_nodes(self, node_ids: tuple[str, ...], deallocation: str = "requeue") -> None: ...
