"""Completion events: one CloudEvents 1.0 event per final ledger row, built from the row alone.

- `type`: `mp4tomp3.conversion.<succeeded|failed|rejected|skipped>`; `source`: EVENTS_SOURCE (names the app);
  `subject`: `/containers/<container>/blobs/<name>` (the input, as Storage's own events name it).
- `id`: `<RowKey>.<outcome>`. The RowKey is derived from the input's name and ETag (shared/naming.py), so the id
  is the same every time the same input version ends with the same outcome: a consumer de-duplicates on it.
- `data`: the input (container, name, ETag, size, version id), the output (container, name, URL without any
  SAS, size) of a success, the options used, the reason of anything but a success, the task id, and timings
  (submitted, started, ended, the task's run time).

Pure: the publisher (shared/publish.py) reads the row and the MP3's size, and sends what this returns.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from .ledger import LedgerRow, State
from .options import parse_canonical

TYPE_PREFIX = "mp4tomp3.conversion."
SPEC_VERSION = "1.0"


def state_of(row: LedgerRow) -> str:
    return row.state.value if isinstance(row.state, State) else str(row.state)


def event_id(row: LedgerRow) -> str:
    return f"{row.row_key}.{state_of(row)}"


def event_type(row: LedgerRow) -> str:
    return TYPE_PREFIX + state_of(row)


def subject(container: str, name: str) -> str:
    return f"/containers/{container}/blobs/{name}"


def completion_event(row: LedgerRow, *, source: str, output_container: str, output_size: int | None,
                     now: datetime) -> dict[str, Any]:
    """The CloudEvents JSON (structured mode) of a final row."""
    outcome = state_of(row)
    succeeded = outcome == State.SUCCEEDED.value
    options = parse_canonical(row.options)
    final_at = row.ended_at if row.ended_at is not None and outcome in (State.SUCCEEDED.value, State.FAILED.value) \
        else row.updated_at or row.recorded_at or now
    data: dict[str, Any] = {
        "outcome": outcome,
        "input": {"container": row.input_container, "name": row.input_name, "etag": row.input_etag,
                  "size": row.input_size, "versionId": row.input_version_id},
        "output": {"container": output_container, "name": row.output_name, "url": row.output_url,
                   "size": output_size} if succeeded else None,
        "options": options.as_metadata() if options is not None else None,
        "reason": None if succeeded else (row.reason or row.ffmpeg_error or row.failure_message),
        "taskId": row.task_id,
        "jobId": row.job_id,
        "durationSeconds": row.duration_seconds,
        "timings": {"submittedAt": _iso(row.recorded_at), "startedAt": _iso(row.started_at),
                    "endedAt": _iso(row.ended_at), "finalAt": _iso(final_at)},
        "retries": row.retries,
        "resubmits": row.resubmits,
    }
    return {
        "specversion": SPEC_VERSION,
        "type": event_type(row),
        "source": source,
        "id": event_id(row),
        "time": _iso(final_at),
        "subject": subject(row.input_container, row.input_name),
        "datacontenttype": "application/json",
        "data": data,
    }


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
