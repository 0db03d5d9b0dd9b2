"""The Batch calls the timer makes, on the process's one cached `BatchClient` (shared/clients.py).

Reads return plain values (no SDK types leak into reconcile/scaling); pool actions raise
`PoolActionRefused` carrying the service's error code when Batch says no (409 PoolBeingResized,
503 TooManyEnableAutoScaleRequests, ...): the timer logs it and the next tick decides again.

Resize, stop-resize and remove-nodes are sent through the SDK's `_*_internal` operations. The public
`begin_*` wrappers of azure-batch 15.1.0 (_operations/_patch.py) start a daemon thread that polls
GET /pools/{id} every 5 s until the pool is steady - minutes on the real service - which would keep
a Functions worker busy and multiply Batch calls after the tick has returned. The internal methods
are the same single POST (202); the next tick observes the allocation state instead. The SDK version
is pinned in requirements.txt and tests/integration/test_timer_monitor.py runs these calls against the
emulator.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from azure.batch import BatchClient
from azure.batch import models as batch_models
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from .gateway import LIST_PAGE_SIZE, TASK_CHANGE_FIELDS, TaskCounts, TaskSnapshot, error_code, odata_datetime, snapshot
from .log import event, get_logger
from .scaling import Allocation, PoolSnapshot
from .settings import NodePriority
from .task_spec import META_SOURCE_CONTAINER, META_SOURCE_ETAG, OUTPUT_FILE

_log = get_logger("batch_monitor")

BAD_NODE_STATES = frozenset({"starttaskfailed", "unusable"})
_NODE_FIELDS = ["id", "state", "errors", "startTaskInfo"]
_ORIGIN_FIELDS = ["id", "displayName", "creationTime", "outputFiles"]


class PoolActionRefused(RuntimeError):
    """Batch refused a pool operation; `code` is its error code (e.g. PoolBeingResized)."""

    def __init__(self, operation: str, code: str | None, status: int | None) -> None:
        super().__init__(f"{operation} refused: HTTP {status} {code}")
        self.operation = operation
        self.code = code
        self.status = status


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


@dataclass(frozen=True)
class TaskOrigin:
    """Where an adopted task came from (read from the task itself: the ledger never saw it)."""

    task_id: str
    input_name: str | None
    input_container: str | None
    input_etag: str | None
    output_name: str | None
    creation_time: datetime | None


class BatchMonitor:
    def __init__(self, client: BatchClient, *, pool_id: str, job_id: str, priority: NodePriority,
                 autoscale_formula: str, autoscale_interval: timedelta) -> None:
        self._client = client
        self._pool_id = pool_id
        self._job_id = job_id
        self._priority = priority
        self._formula = autoscale_formula
        self._interval = autoscale_interval

    @property
    def job_id(self) -> str:
        return self._job_id

    # -- tasks ----------------------------------------------------------------------------------
    def list_task_changes(self, since: datetime | None) -> Iterator[TaskSnapshot]:
        """Tasks whose state changed at or after `since` (every task when None), $select-ed, paged."""
        task_filter = f"stateTransitionTime ge {odata_datetime(since)}" if since else None
        try:
            for task in self._client.list_tasks(self._job_id, filter=task_filter, select=TASK_CHANGE_FIELDS,
                                                max_results=LIST_PAGE_SIZE):
                yield snapshot(task)
        except ResourceNotFoundError:
            return  # no job yet: nothing was ever submitted

    def list_completed_before(self, cutoff: datetime, limit: int) -> list[TaskSnapshot]:
        """Up to `limit` completed tasks whose completion is older than `cutoff` (hygiene candidates)."""
        task_filter = f"state eq 'completed' and stateTransitionTime lt {odata_datetime(cutoff)}"
        found: list[TaskSnapshot] = []
        try:
            for task in self._client.list_tasks(self._job_id, filter=task_filter, select=TASK_CHANGE_FIELDS,
                                                max_results=min(LIST_PAGE_SIZE, max(1, limit))):
                found.append(snapshot(task))
                if len(found) >= limit:
                    break
        except ResourceNotFoundError:
            pass
        return found

    def task_origin(self, task_id: str) -> TaskOrigin | None:
        try:
            task = self._client.get_task(self._job_id, task_id, select=_ORIGIN_FIELDS)
        except ResourceNotFoundError:
            return None
        return origin_of(task)

    def task_counts(self) -> TaskCounts | None:
        try:
            counts = self._client.get_job_task_counts(self._job_id).task_counts
        except ResourceNotFoundError:
            return None
        return TaskCounts(active=counts.active, running=counts.running, completed=counts.completed,
                          succeeded=counts.succeeded, failed=counts.failed)

    def delete_task(self, task_id: str) -> bool:
        """True when the task is gone (deleted now, or already)."""
        try:
            self._client.delete_task(self._job_id, task_id)
        except ResourceNotFoundError:
            pass
        return True

    # -- pool -----------------------------------------------------------------------------------
    def get_pool(self) -> PoolView | None:
        try:
            pool = self._client.get_pool(self._pool_id)
        except ResourceNotFoundError:
            return None
        return pool_view(pool, ())

    def with_nodes(self, view: PoolView) -> tuple[PoolView, tuple[NodeView, ...]]:
        """Adds the nodes (one call; skipped for an empty pool) and their unusable ones to the view."""
        snap = view.snapshot
        if snap.current_nodes == 0 and snap.target_nodes == 0:
            return view, ()
        nodes = tuple(node_view(n) for n in self._client.list_nodes(self._pool_id, select=_NODE_FIELDS))
        bad = tuple(n for n in nodes if n.state in BAD_NODE_STATES)
        node_errors = tuple(PoolError("node", n.state, f"{n.node_id}: {n.error}" if n.error else n.node_id)
                            for n in bad)
        snap = PoolSnapshot(allocation=snap.allocation, autoscale_enabled=snap.autoscale_enabled,
                            current_nodes=snap.current_nodes, target_nodes=snap.target_nodes,
                            task_slots_per_node=snap.task_slots_per_node,
                            bad_node_ids=tuple(n.node_id for n in bad))
        return PoolView(snap, view.errors + node_errors, view.autoscale_results), nodes

    def disable_autoscale(self) -> None:
        self._pool_call("disable_autoscale", lambda: self._client.disable_pool_auto_scale(self._pool_id))

    def enable_autoscale(self) -> None:
        options = batch_models.BatchPoolEnableAutoScaleOptions(
            auto_scale_formula=self._formula, auto_scale_evaluation_interval=self._interval)
        # No pipeline retries: the service answers 503 TooManyEnableAutoScaleRequests inside its 30 s rule, and
        # retrying that with backoff would only stall the tick; the next tick tries again.
        self._pool_call("enable_autoscale", lambda: self._client.enable_pool_auto_scale(
            self._pool_id, options, retry_total=0))

    def resize(self, target: int) -> None:
        spot = self._priority is NodePriority.SPOT
        options = batch_models.BatchPoolResizeOptions(
            target_dedicated_nodes=0 if spot else target,
            target_low_priority_nodes=target if spot else 0,
            # Never kill running work on scale-in: nodes leave once their tasks finish.
            node_deallocation_option=batch_models.BatchNodeDeallocationOption.TASK_COMPLETION,
        )
        self._pool_call("resize", lambda: self._client._resize_pool_internal(self._pool_id, options))  # noqa: SLF001

    def stop_resize(self) -> None:
        self._pool_call("stop_resize", lambda: self._client._stop_pool_resize_internal(self._pool_id))  # noqa: SLF001

    def remove_nodes(self, node_ids: tuple[str, ...]) -> None:
        """Remove up to 100 nodes (the service's per-request limit; the pool then resizes, so any rest waits
        for a later tick). Requeue: a task on a removed node goes back to the queue, it is not lost."""
        options = batch_models.BatchNodeRemoveOptions(
            node_ids=list(node_ids[:100]), node_deallocation_option=batch_models.BatchNodeDeallocationOption.REQUEUE)
        self._pool_call("remove_nodes",
                        lambda: self._client._remove_nodes_internal(self._pool_id, options))  # noqa: SLF001

    def _pool_call(self, operation: str, call) -> None:
        try:
            call()
        except HttpResponseError as exc:
            code = error_code(exc)
            event(_log, logging.WARNING, "pool.action_refused", pool_id=self._pool_id, operation=operation,
                  status=exc.status_code, code=code)
            raise PoolActionRefused(operation, code, exc.status_code) from exc


def pool_view(pool: batch_models.BatchPool, extra_errors: tuple[PoolError, ...]) -> PoolView:
    allocation = _text(pool.allocation_state) or "steady"
    snap = PoolSnapshot(
        allocation=Allocation(allocation),
        autoscale_enabled=bool(pool.enable_auto_scale),
        current_nodes=(pool.current_dedicated_nodes or 0) + (pool.current_low_priority_nodes or 0),
        target_nodes=(pool.target_dedicated_nodes or 0) + (pool.target_low_priority_nodes or 0),
        task_slots_per_node=pool.task_slots_per_node or 1,
    )
    errors = [PoolError("resize", e.code, e.message) for e in (pool.resize_errors or [])]
    run = pool.auto_scale_run
    if run is not None and run.error is not None:
        errors.append(PoolError("autoscale", run.error.code, run.error.message))
    return PoolView(snap, tuple(errors) + extra_errors, run.results if run is not None else None)


def node_view(node: batch_models.BatchNode) -> NodeView:
    error = None
    if node.errors:
        first = node.errors[0]
        error = f"{first.code}: {first.message}" if first.message else first.code
    elif node.start_task_info is not None and node.start_task_info.failure_info is not None:
        failure = node.start_task_info.failure_info
        error = f"start task {failure.code}: {failure.message}" if failure.message else f"start task {failure.code}"
    return NodeView(node_id=node.id or "", state=_text(node.state) or "unknown", error=error)


def origin_of(task: batch_models.BatchTask) -> TaskOrigin:
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
                      input_etag=etag, output_name=output,
                      creation_time=task.creation_time)


def _text(value: object) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value)).lower()
