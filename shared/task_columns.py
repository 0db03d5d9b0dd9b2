"""What a Batch task's state means for its file's ledger row: the state and the columns it sets.

Pure functions of a `TaskSnapshot`; the reconciler decides when to write them.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from .batch_types import TaskSnapshot
from .ledger import Col, State
from .log import scrub

_MAX_TEXT = 1024             # failure texts kept short: a row must stay readable
# The app re-adds a file's task itself at most this often (vanished task, refused access, missing container).
RESUBMIT_LIMIT = 3
# Failures that are the infrastructure's, not the file's: the task is added again with fresh access.
_RETRYABLE = {
    "BlobAccessDenied": "the node's access to the input was refused (expired or revoked SAS)",
    "FileUploadAccessDenied": "the node's access to an output container was refused (expired or revoked SAS)",
    "FileUploadContainerNotFound": "an output container was missing when the task uploaded",
    "FileUploadMiscError": "the node could not upload the output",
}


def ledger_state(task: TaskSnapshot) -> State:
    if task.state == "completed":
        return State.SUCCEEDED if task.result == "success" or (task.result is None and task.exit_code == 0) \
            else State.FAILED
    if task.state in ("running", "preparing"):
        return State.RUNNING
    return State.QUEUED  # active: waiting for a node, or for a retry after a failed try


def ms(moment: datetime | None) -> datetime | None:
    """Millisecond UTC precision: what survives a round trip through every table implementation."""
    if moment is None:
        return None
    moment = moment.astimezone(timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def same(a: Any, b: Any) -> bool:
    """Equal as the table stores them (datetimes to the millisecond, Int32/Int64/Double alike)."""
    if isinstance(a, datetime) and isinstance(b, datetime):
        return ms(a) == ms(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def task_fields(task: TaskSnapshot, *, output_url: str | None, ffmpeg_error: str | None) -> dict[str, Any]:
    """The ledger columns a task's current state determines (None = leave the column alone)."""
    state = ledger_state(task)
    fields: dict[str, Any] = {
        Col.STATE: state.value,
        Col.TASK_STATE_TIME: ms(task.state_transition_time),
        Col.RETRIES: task.retry_count,
        Col.REQUEUES: task.requeue_count,
        Col.NODE_ID: task.node_id,
        Col.STARTED_AT: ms(task.start_time),
    }
    if state in (State.SUCCEEDED, State.FAILED):
        fields[Col.ENDED_AT] = ms(task.end_time)
        fields[Col.EXIT_CODE] = task.exit_code
        if task.start_time and task.end_time:
            fields[Col.DURATION_SECONDS] = round((task.end_time - task.start_time).total_seconds(), 3)
    if state is State.SUCCEEDED:
        fields[Col.OUTPUT_URL] = output_url
    if state is State.FAILED:
        failure = task.failure
        message = (failure.message if failure else None) or (
            f"exit code {task.exit_code}" if task.exit_code is not None else "task failed")
        fields[Col.FAILURE_CATEGORY] = failure.category if failure else None
        fields[Col.FAILURE_CODE] = failure.code if failure else None
        fields[Col.FAILURE_MESSAGE] = scrub(message)[:_MAX_TEXT]
        fields[Col.FFMPEG_ERROR] = ffmpeg_error
        fields[Col.REASON] = (_ended_reason(task) or ffmpeg_error or scrub(message))[:_MAX_TEXT]
    return {k: v for k, v in fields.items() if v is not None}


def _ended_reason(task: TaskSnapshot) -> str | None:
    """Terminate Task ends a task with usererror/TaskEnded ("Task Was Ended by User Request"). The app
    terminates a task only when a newer upload of the same name supersedes it (submit.py); say so."""
    failure = task.failure
    if failure is None or failure.code != "TaskEnded" or failure.category != "usererror":
        return None
    return "ended on request: superseded by a newer upload of the same name (or terminated by an operator)"


def later(a: TaskSnapshot, b: TaskSnapshot) -> bool:
    """True when `a` is the same or a newer transition than `b`."""
    if a.state_transition_time is None or b.state_transition_time is None:
        return a.state_transition_time is not None
    return a.state_transition_time >= b.state_transition_time


def retry_reason(task: TaskSnapshot) -> str | None:
    """Why a failed task should run again instead of failing its file, or None when the failure is the file's."""
    if ledger_state(task) is not State.FAILED or task.failure is None or task.failure.code is None:
        return None
    return _RETRYABLE.get(task.failure.code)
