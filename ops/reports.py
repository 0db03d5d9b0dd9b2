"""The reports the operator asks for: files (per-file status), pool, failures. Plain data, no printing."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from shared.batch_types import enum_text
from shared.ledger import LedgerRow, State
from shared.runtime import Service

from .queries import FAILURE_STATES, LedgerReader, detail, newest_first, state_text

# -- files ------------------------------------------------------------------------------------


@dataclass
class FilesReport:
    rows: list[LedgerRow]            # newest first, at most `limit`
    counts: dict[str, int]           # per state, over every matching row
    total: int
    ledger_missing: bool


def files_report(reader: LedgerReader, state: State | None, name_prefix: str | None, limit: int) -> FilesReport:
    # Counting needs every matching row anyway, so one scan gives both the counts and the newest N.
    rows = list(reader.entries([state] if state else (), name_prefix))
    counts = Counter(state_text(r) for r in rows)
    rows.sort(key=newest_first, reverse=True)
    shown = rows[:limit] if limit > 0 else rows
    ordered = {s.value: counts.pop(s.value, 0) for s in State}
    ordered.update(sorted(counts.items()))  # states this CLI does not know yet, if any
    # Only an empty answer can come from a missing table: ask then, not on every report.
    return FilesReport(shown, ordered, len(rows), not rows and not reader.table_exists())


# -- pool -------------------------------------------------------------------------------------

@dataclass
class PoolReport:
    pool_id: str
    job_id: str
    pool: dict[str, Any] | None          # None: the pool does not exist (yet)
    node_counts: dict[str, dict[str, int]] | None
    task_counts: dict[str, int] | None   # over all our jobs; None: no job exists (yet)
    task_slot_counts: dict[str, int] | None
    status_rows: list[dict[str, Any]]
    jobs: list[dict[str, Any]] = field(default_factory=list)  # each period job: id, state, its task counts


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value else None


def _pool_fields(pool: Any) -> dict[str, Any]:
    run = pool.auto_scale_run
    run_error = run.error if run is not None else None
    return {
        "state": enum_text(pool.state),
        "allocation_state": enum_text(pool.allocation_state),
        "allocation_state_since": _iso(pool.allocation_state_transition_time),
        "vm_size": pool.vm_size,
        "task_slots_per_node": pool.task_slots_per_node,
        "autoscale_enabled": bool(pool.enable_auto_scale),
        "autoscale_interval": str(pool.auto_scale_evaluation_interval) if pool.auto_scale_evaluation_interval else None,
        "last_autoscale_run": None if run is None else {
            "timestamp": _iso(run.timestamp), "results": run.results,
            "error": f"{run_error.code}: {run_error.message}" if run_error is not None else None},
        "current_dedicated_nodes": pool.current_dedicated_nodes or 0,
        "target_dedicated_nodes": pool.target_dedicated_nodes or 0,
        "current_low_priority_nodes": pool.current_low_priority_nodes or 0,
        "target_low_priority_nodes": pool.target_low_priority_nodes or 0,
        "resize_errors": [f"{e.code}: {e.message}" for e in (pool.resize_errors or [])],
    }


_NODE_STATES = ("creating", "starting", "waiting_for_start_task", "start_task_failed", "idle", "running",
                "rebooting", "reimaging", "leaving_pool", "offline", "preempted", "unusable", "unknown",
                "deallocating", "deallocated", "upgrading_os")


def _node_count_fields(counts: Any) -> dict[str, int]:
    """Non-zero node states plus the total (the service reports ~16 states, mostly zero)."""
    if counts is None:
        return {"total": 0}
    fields = {s: getattr(counts, s, 0) or 0 for s in _NODE_STATES}
    return {**{k: v for k, v in fields.items() if v}, "total": counts.total or 0}


def _count_fields(counts: Any) -> dict[str, int] | None:
    if counts is None:
        return None
    return {k: getattr(counts, k) or 0 for k in ("active", "running", "completed", "succeeded", "failed")}


def pool_report(service: Service, reader: LedgerReader) -> PoolReport:
    settings = service.settings
    pool = service.batch.pool()  # None: created lazily by the first upload
    node_counts = None
    if pool is not None:
        entry = service.batch.node_counts()
        node_counts = {"dedicated": _node_count_fields(entry.dedicated if entry else None),
                       "low_priority": _node_count_fields(entry.low_priority if entry else None)}
    task_counts = slot_counts = None
    jobs = []
    for job in service.batch.our_jobs():  # none: jobs are created lazily by the first upload of a period
        result = service.batch.job_task_counts(job.job_id)
        tasks = _count_fields(result.task_counts) if result is not None else None
        jobs.append({"id": job.job_id, "state": job.state, "tasks": tasks})
        if result is not None:
            task_counts = _add(task_counts, tasks)
            slot_counts = _add(slot_counts, _count_fields(result.task_slot_counts))
    return PoolReport(settings.pool_id, settings.job_id, _pool_fields(pool) if pool is not None else None,
                      node_counts, task_counts, slot_counts, reader.status_rows(), jobs)


def _add(total: dict[str, int] | None, counts: dict[str, int] | None) -> dict[str, int] | None:
    if counts is None:
        return total
    return {k: (total or {}).get(k, 0) + v for k, v in counts.items()}


# -- failures ---------------------------------------------------------------------------------

@dataclass
class FailureEntry:
    input_name: str
    state: str
    category: str | None
    code: str | None
    exit_code: int | None
    message: str | None
    batch_message: str | None        # Batch's failure message when `message` is ffmpeg's line
    retries: int | None
    task_id: str | None
    updated_at: datetime | None
    logs: list[str]                  # "<logs container>/<task id>/<file>" of the uploaded logs
    logs_prefix: str | None          # where the task's logs go, uploaded or not


def failure_logs(service: Service, task_id: str | None) -> tuple[list[str], str | None]:
    """The task's uploaded logs (ffmpeg.log, stderr.txt go to `<logs>/<task id>/` on failure)."""
    if not task_id:
        return [], None
    container = service.settings.logs_container
    prefix = f"{task_id}/"
    try:
        names = [b.name for b in service.clients.blob_service.get_container_client(container)
                 .list_blobs(name_starts_with=prefix)]
    except ResourceNotFoundError:
        names = []
    return [f"{container}/{n}" for n in names], f"{container}/{prefix}"


def failures_report(service: Service, reader: LedgerReader, limit: int) -> list[FailureEntry]:
    rows = sorted(reader.entries(FAILURE_STATES), key=newest_first, reverse=True)
    if limit > 0:
        rows = rows[:limit]
    report = []
    for r in rows:
        logs, prefix = failure_logs(service, r.task_id)
        why = detail(r)
        batch_message = r.failure_message if r.failure_message != why else None
        report.append(FailureEntry(r.input_name, state_text(r), r.failure_category, r.failure_code, r.exit_code, why,
                                   batch_message, r.retries, r.task_id, r.updated_at, logs, prefix))
    return report
