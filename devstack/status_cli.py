"""`./dev status`: the operator's view of the service (ledger files, pool, failures) and resubmit.

Works against the local stack and, with the right settings, against Azure: settings come from a
local.settings.json-shaped file (`--settings`) or from the process environment (`--env`) and are
validated by the app's own `shared.settings` (an error names the setting); clients are the app's
own (`shared.runtime.build_service`: keys locally, DefaultAzureCredential in Azure).

Everything printed passes through `shared.log.scrub`: ledger messages and Batch failure texts can
quote resource-file URLs, and a SAS query string or account key must never reach a terminal or
a script's output.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import IO, Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.data.tables import TableClient, UpdateMode
from rich.console import Console
from rich.table import Table
from rich.text import Text

from shared import naming
from shared.clock import utc_now
from shared.batch_types import AddOutcome, BatchUnavailable, error_code
from shared.ledger import STATUS_PARTITION, Col, LedgerRow, State
from shared.log import scrub
from shared.runtime import Service, build_service
from shared.settings import Settings, SettingsError
from shared.trigger import blob_version

ROOT = Path(__file__).resolve().parent.parent
LOCAL_SETTINGS = "local.settings.json"
SAMPLE_SETTINGS = "local.settings.sample.json"

EXIT_OK = 0
EXIT_INCOMPLETE = 1   # resubmit: some files were not resubmitted; or the service could not be reached
EXIT_USAGE = 2        # bad arguments or settings

DEFAULT_LIMIT = 50
FAILURE_STATES = (State.FAILED, State.REJECTED)


class StatusError(Exception):
    """A problem the operator can act on; printed without a traceback."""


# -- settings ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class LoadedSettings:
    settings: Settings
    source: str          # where they came from, for messages ("local.settings.json", "environment")


def settings_file(explicit: str | None, cwd: Path) -> Path:
    """--settings PATH, else ./local.settings.json, else the sample (cwd first, then the repo root)."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise StatusError(f"settings file {path} does not exist")
        return path
    for folder in dict.fromkeys((cwd, ROOT)):
        for name in (LOCAL_SETTINGS, SAMPLE_SETTINGS):
            if (folder / name).is_file():
                return folder / name
    raise StatusError(f"no {LOCAL_SETTINGS} or {SAMPLE_SETTINGS} here; pass --settings PATH or --env")


def read_values(path: Path) -> dict[str, str]:
    """The `Values` of a local.settings.json-shaped file, as the Functions host reads them."""
    # Imported here: the dev host's reader (IsEncrypted, non-string values) is the one contract.
    from devstack.devhost.errors import DevHostError
    from devstack.devhost.settings import load_local_settings

    try:
        return load_local_settings(path.parent, settings_path=path).values
    except DevHostError as exc:
        raise StatusError(str(exc)) from exc


def load_settings(*, use_env: bool, settings_path: str | None, env: Mapping[str, str],
                  cwd: Path) -> LoadedSettings:
    if use_env:
        values, source = dict(env), "the environment"
    else:
        path = settings_file(settings_path, cwd)
        values, source = read_values(path), str(path)
    try:
        return LoadedSettings(Settings.from_env(values), source)
    except SettingsError as exc:
        raise StatusError(f"settings from {source}: {exc}{_typo_hint(exc.setting, values)}") from exc


def _typo_hint(setting: str, values: Mapping[str, str]) -> str:
    """A misspelt setting name is the usual reason a required one is 'not set'."""
    import difflib

    if values.get(setting, "").strip():
        return ""
    close = difflib.get_close_matches(setting, [k for k, v in values.items() if k != setting and v], n=1,
                                      cutoff=0.85)
    return f" (found {close[0]}: a misspelling of {setting}?)" if close else ""


# -- the ledger, read --------------------------------------------------------------------------

def _text(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


def _number(value: Any) -> float | None:
    raw = getattr(value, "value", value)
    if raw is None or isinstance(raw, bool):
        return None
    try:
        return float(raw)
    except (TypeError, ValueError):
        return None


def _moment(value: Any) -> datetime | None:
    return value if isinstance(value, datetime) else None


@dataclass(frozen=True)
class LedgerEntry:
    """One ledger row as the operator sees it; plain values, no SDK types."""

    row_key: str
    state: str
    input_container: str
    input_name: str
    input_etag: str | None
    input_size: int | None
    input_content_type: str | None
    output_name: str | None
    task_id: str | None
    submitted_at: datetime | None
    updated_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    duration_seconds: float | None
    reason: str | None
    exit_code: int | None
    failure_category: str | None
    failure_message: str | None
    failure_code: str | None         # Batch failureInfo code (the reconciler's column)
    ffmpeg_error: str | None         # ffmpeg's error line from the uploaded log (the reconciler's column)
    retries: int | None
    entity_etag: str | None = field(default=None, repr=False)

    @classmethod
    def from_entity(cls, entity: Mapping[str, Any]) -> LedgerEntry:
        started, ended = _moment(entity.get(Col.STARTED_AT)), _moment(entity.get(Col.ENDED_AT))
        duration = _number(entity.get(Col.DURATION_SECONDS))
        if duration is None and started is not None and ended is not None:
            duration = (ended - started).total_seconds()
        size, exit_code, retries = (_number(entity.get(c)) for c in (Col.INPUT_SIZE, Col.EXIT_CODE, Col.RETRIES))
        metadata = getattr(entity, "metadata", None) or {}
        return cls(
            row_key=str(entity.get("RowKey", "")),
            state=_text(entity.get(Col.STATE)) or "",
            input_container=_text(entity.get(Col.INPUT_CONTAINER)) or "",
            input_name=_text(entity.get(Col.INPUT_NAME)) or "",
            input_etag=_text(entity.get(Col.INPUT_ETAG)),
            input_size=int(size) if size is not None else None,
            input_content_type=_text(entity.get(Col.INPUT_CONTENT_TYPE)),
            output_name=_text(entity.get(Col.OUTPUT_NAME)),
            task_id=_text(entity.get(Col.TASK_ID)),
            submitted_at=_moment(entity.get(Col.SUBMITTED_AT)),
            updated_at=_moment(entity.get(Col.UPDATED_AT)),
            started_at=started,
            ended_at=ended,
            duration_seconds=duration,
            reason=_text(entity.get(Col.REASON)),
            exit_code=int(exit_code) if exit_code is not None else None,
            failure_category=_text(entity.get(Col.FAILURE_CATEGORY)),
            failure_message=_text(entity.get(Col.FAILURE_MESSAGE)),
            failure_code=_text(entity.get(Col.FAILURE_CODE)),
            ffmpeg_error=_text(entity.get(Col.FFMPEG_ERROR)),
            retries=int(retries) if retries is not None else None,
            entity_etag=metadata.get("etag"),
        )

    @property
    def detail(self) -> str | None:
        """Why a file is where it is: ffmpeg's own error line, else Batch's failure message, else the
        trigger's reason (skipped / rejected)."""
        return self.ffmpeg_error or self.failure_message or self.reason


def _prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string above every string starting with `prefix` (for a ge/lt range)."""
    last = ord(prefix[-1])
    if last >= 0xFFFF:
        return None
    return prefix[:-1] + chr(last + 1)


class LedgerReader:
    """Queries one job's partition; a missing table reads as an empty ledger."""

    def __init__(self, table: TableClient, job_id: str) -> None:
        self._table = table
        self._job_id = job_id
        self.table_missing = False

    def entries(self, states: Iterable[State] = (), name_prefix: str | None = None) -> Iterator[LedgerEntry]:
        clauses, params = ["PartitionKey eq @pk"], {"pk": self._job_id}
        states = list(states)
        if states:
            params.update({f"s{i}": s.value for i, s in enumerate(states)})
            # Spaces around the parentheses: the SDK substitutes @names in space-separated words only.
            clauses.append("( " + " or ".join(f"State eq @s{i}" for i in range(len(states))) + " )")
        upper = _prefix_upper_bound(name_prefix) if name_prefix else None
        if name_prefix:
            # The RowKey is a transformed name (naming.readable_prefix), so the range runs on InputName.
            clauses.append("InputName ge @lo" + (" and InputName lt @hi" if upper else ""))
            params.update({"lo": name_prefix, **({"hi": upper} if upper else {})})
        for entity in self._query(" and ".join(clauses), params):
            entry = LedgerEntry.from_entity(entity)
            if name_prefix is None or entry.input_name.startswith(name_prefix):
                yield entry

    def matching(self, name_or_task_id: str) -> list[LedgerEntry]:
        """Rows whose input name or task id (RowKey) is exactly this; several versions of a name may match."""
        query = "PartitionKey eq @pk and ( InputName eq @n or RowKey eq @n )"
        return [LedgerEntry.from_entity(e) for e in self._query(query, {"pk": self._job_id, "n": name_or_task_id})]

    def status_rows(self) -> list[dict[str, Any]]:
        """The timer's status/summary rows (partition STATUS_PARTITION), all columns but the keys."""
        rows = []
        for entity in self._query("PartitionKey eq @pk", {"pk": STATUS_PARTITION}):
            row = {"row": entity.get("RowKey")}
            row.update({k: _plain(v) for k, v in entity.items() if k not in ("PartitionKey", "RowKey")})
            rows.append(row)
        return rows

    def _query(self, query: str, params: dict[str, str]) -> Iterator[Any]:
        try:
            yield from self._table.query_entities(query, parameters=params, results_per_page=1000)
        except ResourceNotFoundError:
            # TableNotFound: the ledger is created lazily by the first upload.
            self.table_missing = True


def _plain(value: Any) -> Any:
    """Table values (EntityProperty, TablesEntityDatetime, bytes) as JSON-friendly values."""
    value = getattr(value, "value", value)
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return value


# -- files ------------------------------------------------------------------------------------

@dataclass
class FilesReport:
    rows: list[LedgerEntry]          # newest first, at most `limit`
    counts: dict[str, int]           # per state, over every matching row
    total: int
    ledger_missing: bool


def _newest_first(entry: LedgerEntry) -> datetime:
    return entry.updated_at or entry.submitted_at or datetime.min.replace(tzinfo=timezone.utc)


def files_report(reader: LedgerReader, state: State | None, name_prefix: str | None, limit: int) -> FilesReport:
    # Counting needs every matching row anyway, so one scan gives both the counts and the newest N.
    entries = list(reader.entries([state] if state else (), name_prefix))
    counts = Counter(e.state for e in entries)
    entries.sort(key=_newest_first, reverse=True)
    shown = entries[:limit] if limit > 0 else entries
    ordered = {s.value: counts.pop(s.value, 0) for s in State}
    ordered.update(sorted(counts.items()))  # states this CLI does not know yet, if any
    return FilesReport(shown, ordered, len(entries), reader.table_missing)


# -- pool -------------------------------------------------------------------------------------

@dataclass
class PoolReport:
    pool_id: str
    job_id: str
    pool: dict[str, Any] | None          # None: the pool does not exist (yet)
    node_counts: dict[str, dict[str, int]] | None
    task_counts: dict[str, int] | None   # None: the job does not exist (yet)
    task_slot_counts: dict[str, int] | None
    status_rows: list[dict[str, Any]]


def _enum_text(value: Any) -> str | None:
    return None if value is None else str(getattr(value, "value", value)).lower()


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value else None


def _pool_fields(pool: Any) -> dict[str, Any]:
    run = pool.auto_scale_run
    run_error = run.error if run is not None else None
    return {
        "state": _enum_text(pool.state),
        "allocation_state": _enum_text(pool.allocation_state),
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
    batch, settings = service.clients.batch, service.settings
    pool: dict[str, Any] | None = None
    node_counts = None
    try:
        pool = _pool_fields(batch.get_pool(settings.pool_id))
    except ResourceNotFoundError:
        pass  # PoolNotFound: created lazily by the first upload
    if pool is not None:
        node_counts = {"dedicated": {"total": 0}, "low_priority": {"total": 0}}
        pool_filter = f"poolId eq '{settings.pool_id}'"  # pool ids are [A-Za-z0-9_-]: no quoting needed
        for entry in batch.list_pool_node_counts(filter=pool_filter):
            if entry.pool_id == settings.pool_id:
                node_counts = {"dedicated": _node_count_fields(entry.dedicated),
                               "low_priority": _node_count_fields(entry.low_priority)}
    task_counts = slot_counts = None
    try:
        result = batch.get_job_task_counts(settings.job_id)
        task_counts, slot_counts = _count_fields(result.task_counts), _count_fields(result.task_slot_counts)
    except ResourceNotFoundError:
        pass  # JobNotFound: created lazily too
    return PoolReport(settings.pool_id, settings.job_id, pool, node_counts, task_counts, slot_counts,
                      reader.status_rows())


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
    entries = sorted(reader.entries(FAILURE_STATES), key=_newest_first, reverse=True)
    if limit > 0:
        entries = entries[:limit]
    report = []
    for e in entries:
        logs, prefix = failure_logs(service, e.task_id)
        batch_message = e.failure_message if e.failure_message != e.detail else None
        report.append(FailureEntry(e.input_name, e.state, e.failure_category, e.failure_code, e.exit_code, e.detail,
                                   batch_message, e.retries, e.task_id, e.updated_at, logs, prefix))
    return report


# -- resubmit ---------------------------------------------------------------------------------

class ResubmitOutcome(str, Enum):
    RESUBMITTED = "resubmitted"
    NOT_FOUND = "not_found"          # no ledger row by that name or task id
    NOT_FAILED = "not_failed"        # the row is not in state failed
    INPUT_MISSING = "input_missing"  # the input blob no longer exists
    SUPERSEDED = "superseded"        # the blob was re-uploaded: the new version has its own task and row
    TASK_BUSY = "task_busy"          # Batch still runs (or retries) the task
    ERROR = "error"


@dataclass
class ResubmitResult:
    input_name: str
    task_id: str | None
    outcome: ResubmitOutcome
    detail: str


@dataclass(frozen=True)
class ResubmitCandidate:
    entry: LedgerEntry | None
    requested: str                   # what the operator typed (or the input name for --all-failed)


def select_candidates(reader: LedgerReader, names: Sequence[str], all_failed: bool) -> list[ResubmitCandidate]:
    if all_failed:
        return [ResubmitCandidate(e, e.input_name) for e in reader.entries([State.FAILED])]
    selected: list[ResubmitCandidate] = []
    seen: set[str] = set()
    for name in names:
        matches = reader.matching(name)
        if not matches:
            selected.append(ResubmitCandidate(None, name))
        # A name can have several versions (re-uploads): its failed ones are what the operator means;
        # with none failed, the newest version explains why nothing is resubmitted.
        failed = [m for m in matches if m.state == State.FAILED.value]
        for entry in failed or sorted(matches, key=_newest_first, reverse=True)[:1]:
            if entry.row_key not in seen:
                seen.add(entry.row_key)
                selected.append(ResubmitCandidate(entry, name))
    return selected


class Resubmitter:
    """Runs one failed blob version again, under the same task id (it is derived from name + ETag).

    Steps, each a precondition for the next so a refusal changes nothing:
    1. the input blob still exists with the row's ETag (else say so: a newer upload has its own task);
    2. the old task is completed or gone (deleting an active or running task would kill work);
    3. the ledger row is reset to what the trigger writes at submit (state queued, no failure
       columns), conditional on the row's ETag so a concurrent reconciler update is not clobbered;
    4. the completed task is deleted (TaskNotFound is fine) and the app's own submit path adds the
       task again with a fresh spec (new short-lived SAS: the old task's may have expired, which is
       why Batch's reactivate-task is not used). If that fails, the row's failure is restored.
    """

    def __init__(self, service: Service, clock: Callable[[], datetime] = utc_now) -> None:
        self._service = service
        self._clock = clock

    def run(self, candidate: ResubmitCandidate) -> ResubmitResult:
        entry = candidate.entry
        if entry is None:
            return ResubmitResult(candidate.requested, None, ResubmitOutcome.NOT_FOUND,
                                  "no ledger row has this input name or task id")
        if entry.state != State.FAILED.value:
            why = f": {entry.detail}" if entry.detail else ""
            return self._result(entry, ResubmitOutcome.NOT_FAILED,
                                f"state is {entry.state}{why}; only failed files are resubmitted")
        version = blob_version(self._service.clients.blob_service.get_blob_client(entry.input_container,
                                                                                  entry.input_name))
        if version.etag is None:
            return self._result(entry, ResubmitOutcome.INPUT_MISSING,
                                f"input blob {entry.input_container}/{entry.input_name} no longer exists; not resubmitted")
        if naming.normalize_etag(version.etag) != naming.normalize_etag(entry.input_etag or ""):
            newer = naming.task_id(version.name, version.etag)
            return self._result(entry, ResubmitOutcome.SUPERSEDED,
                                f"the blob was uploaded again since; the new version is task {newer}; not resubmitted")
        task_id = entry.task_id or entry.row_key
        busy = self._task_state(task_id)
        if busy is not None:
            return self._result(entry, ResubmitOutcome.TASK_BUSY, f"task is still {busy} in Batch; not resubmitted")
        original = self._service.clients.ledger_table.get_entity(self._service.settings.job_id, entry.row_key)
        try:
            reset_etag = self._reset_row(entry, version.size, version.content_type)
        except ResourceModifiedError:
            return self._result(entry, ResubmitOutcome.ERROR,
                                "the ledger row changed while resubmitting (the timer updated it); try again")
        try:
            self._delete_task(task_id)
            self._service.ensure_output_containers()
            outcome = self._service.submitter.handle(version)
        except (BatchUnavailable, HttpResponseError) as exc:
            self._restore_row(original, reset_etag)
            return self._result(entry, ResubmitOutcome.ERROR, f"could not add the task: {exc}; the row stays failed")
        if outcome.state is not State.QUEUED or outcome.task is not AddOutcome.CREATED:
            # The submit path refused (its rules changed since) or the old task survived the delete.
            detail = outcome.reason or f"task {outcome.task.value if outcome.task else 'not added'}"
            self._restore_row(original, reset_etag)
            return self._result(entry, ResubmitOutcome.ERROR, f"not resubmitted: {detail}; the row stays failed")
        return self._result(entry, ResubmitOutcome.RESUBMITTED, f"task {task_id} added again; state queued")

    def _result(self, entry: LedgerEntry, outcome: ResubmitOutcome, detail: str) -> ResubmitResult:
        return ResubmitResult(entry.input_name, entry.task_id or entry.row_key, outcome, detail)

    def _task_state(self, task_id: str) -> str | None:
        """The task's state when it is not completed; None when completed or gone."""
        try:
            task = self._service.clients.batch.get_task(self._service.settings.job_id, task_id, select=["id", "state"])
        except ResourceNotFoundError:
            return None  # TaskNotFound / JobNotFound
        state = _enum_text(task.state)
        return None if state == "completed" else state

    def _delete_task(self, task_id: str) -> None:
        try:
            self._service.clients.batch.delete_task(self._service.settings.job_id, task_id)
        except ResourceNotFoundError as exc:
            if error_code(exc) not in ("TaskNotFound", "JobNotFound", None):
                raise

    def _reset_row(self, entry: LedgerEntry, size: int | None, content_type: str | None) -> str:
        """Replace the row with the one the trigger writes at submit; returns the new entity ETag."""
        row = LedgerRow(job_id=self._service.settings.job_id, row_key=entry.row_key, state=State.QUEUED,
                        input_container=entry.input_container, input_name=entry.input_name,
                        input_etag=entry.input_etag, input_size=size if size is not None else entry.input_size,
                        input_content_type=content_type or entry.input_content_type,
                        output_name=entry.output_name or naming.output_name(entry.input_name),
                        task_id=entry.task_id or entry.row_key, recorded_at=self._clock())
        headers = self._service.clients.ledger_table.update_entity(
            row.to_entity(), mode=UpdateMode.REPLACE, etag=entry.entity_etag,
            match_condition=MatchConditions.IfNotModified)
        return headers["etag"]

    def _restore_row(self, original: Mapping[str, Any], reset_etag: str) -> None:
        try:
            self._service.clients.ledger_table.update_entity(
                dict(original), mode=UpdateMode.REPLACE, etag=reset_etag, match_condition=MatchConditions.IfNotModified)
        except ResourceModifiedError:
            pass  # someone (the timer) already moved the row on: theirs is newer than ours


# -- output -----------------------------------------------------------------------------------

def _scrubbed(value: Any) -> Any:
    """Recursively scrub strings and turn dataclasses, enums and datetimes into JSON values."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {str(k): _scrubbed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrubbed(v) for v in value]
    return value


def _cell(value: Any) -> Text:
    """A table cell as literal text: blob names may contain rich markup like '[bold]'."""
    if value is None or value == "":
        return Text("-", style="dim")
    if isinstance(value, datetime):
        return Text(value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ"))
    return Text(scrub(str(value)))


_STATE_STYLE = {"succeeded": "green", "failed": "red", "rejected": "red", "running": "cyan",
                "queued": "yellow", "skipped": "dim"}


def _duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    minutes, secs = divmod(max(seconds, 0.0), 60)
    return f"{int(minutes)}m{secs:04.1f}s" if minutes else f"{secs:.1f}s"


def _entry_json(e: LedgerEntry) -> dict[str, Any]:
    data = asdict(e)
    data.pop("entity_etag")
    data["detail"] = e.detail
    return data


class Output:
    def __init__(self, out: IO[str], as_json: bool) -> None:
        self.as_json = as_json
        self._out = out
        # Not a terminal (a pipe, grep, a test): wide enough that no cell wraps, so one row stays one line.
        self.console = Console(file=out, width=None if out.isatty() else 1000, highlight=False,
                               soft_wrap=False)

    def json(self, payload: Any) -> None:
        self._out.write(json.dumps(_scrubbed(payload), indent=2, ensure_ascii=False) + "\n")

    def line(self, text: str, style: str | None = None) -> None:
        self.console.print(Text(scrub(text), style=style or ""))

    def table(self, table: Table) -> None:
        self.console.print(table)


def show_files(out: Output, report: FilesReport, settings: Settings) -> None:
    if out.as_json:
        out.json({"job_id": settings.job_id, "table": settings.ledger_table, "total": report.total,
                  "counts": report.counts, "files": [_entry_json(e) for e in report.rows]})
        return
    if report.ledger_missing:
        out.line(f"ledger table {settings.ledger_table} does not exist yet: nothing has been uploaded", "yellow")
        return
    table = Table(title=f"files in job {settings.job_id} (newest first)", title_justify="left")
    for column in ("state", "input", "output", "duration", "updated", "reason / failure"):
        table.add_column(column, overflow="fold")
    for e in report.rows:
        state = _cell(e.state)
        state.stylize(_STATE_STYLE.get(e.state, ""))
        table.add_row(state, _cell(e.input_name), _cell(e.output_name), _cell(_duration(e.duration_seconds)),
                      _cell(e.updated_at), _cell(e.detail))
    out.table(table)
    shown = f"showing {len(report.rows)} of {report.total}" if len(report.rows) < report.total else f"{report.total} files"
    counts = ", ".join(f"{state} {n}" for state, n in report.counts.items() if n) or "none"
    out.line(f"{shown}: {counts}", "bold")


def show_pool(out: Output, report: PoolReport) -> None:
    if out.as_json:
        out.json(asdict(report))
        return
    if report.pool is None:
        out.line(f"pool {report.pool_id} does not exist yet (the first upload creates it)", "yellow")
    else:
        p = report.pool
        table = Table(title=f"pool {report.pool_id}", title_justify="left", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        table.add_row("state", _cell(f"{p['state']}, allocation {p['allocation_state']} since {p['allocation_state_since']}"))
        table.add_row("vm size", _cell(f"{p['vm_size']}, {p['task_slots_per_node']} task slots per node"))
        table.add_row("autoscale", _cell(f"enabled, every {p['autoscale_interval']}" if p["autoscale_enabled"] else "disabled"))
        run = p["last_autoscale_run"]
        if run:
            table.add_row("last autoscale run", _cell(f"{run['timestamp']}: {run['error'] or run['results']}"))
        table.add_row("dedicated nodes", _cell(f"{p['current_dedicated_nodes']} current / {p['target_dedicated_nodes']} target"))
        table.add_row("low-priority nodes",
                      _cell(f"{p['current_low_priority_nodes']} current / {p['target_low_priority_nodes']} target"))
        for kind, counts in (report.node_counts or {}).items():
            table.add_row(f"{kind.replace('_', '-')} by state", _cell(_counts_text(counts)))
        for error in p["resize_errors"]:
            table.add_row(Text("resize error", style="red"), _cell(error))
        out.table(table)
    if report.task_counts is None:
        out.line(f"job {report.job_id} does not exist yet (the first upload creates it)", "yellow")
    else:
        out.line(f"job {report.job_id} tasks: {_counts_text(report.task_counts)}")
    if not report.status_rows:
        out.line("no status row from the timer yet")
    for row in report.status_rows:
        table = Table(title=f"timer status row {row['row']}", title_justify="left", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        for key, value in row.items():
            if key != "row":
                table.add_row(key, _cell(value))
        out.table(table)


def _counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items())


def show_failures(out: Output, report: list[FailureEntry]) -> None:
    if out.as_json:
        out.json({"failures": [asdict(f) for f in report]})
        return
    if not report:
        out.line("no failed or rejected files", "green")
        return
    table = Table(title="failed and rejected files (newest first)", title_justify="left")
    for column in ("state", "input", "category / code", "exit", "message", "logs"):
        table.add_column(column, overflow="fold")
    for f in report:
        logs = "\n".join(f.logs) if f.logs else (f"{f.logs_prefix} (none uploaded)" if f.logs_prefix else None)
        state = _cell(f.state)
        state.stylize("red")
        category = " / ".join(x for x in (f.category, f.code) if x) or None
        message = "\n".join(x for x in (f.message, f.batch_message) if x) or None
        table.add_row(state, _cell(f.input_name), _cell(category), _cell(f.exit_code), _cell(message), _cell(logs))
    out.table(table)
    counts = Counter(f.state for f in report)
    out.line(", ".join(f"{state} {n}" for state, n in sorted(counts.items())), "bold")


def show_resubmits(out: Output, results: list[ResubmitResult]) -> None:
    if out.as_json:
        out.json({"results": [asdict(r) for r in results]})
        return
    table = Table(title="resubmit", title_justify="left")
    for column in ("input", "task", "outcome", "detail"):
        table.add_column(column, overflow="fold")
    for r in results:
        outcome = _cell(r.outcome.value)
        outcome.stylize("green" if r.outcome is ResubmitOutcome.RESUBMITTED else "yellow")
        table.add_row(_cell(r.input_name), _cell(r.task_id), outcome, _cell(r.detail))
    out.table(table)
    done = sum(r.outcome is ResubmitOutcome.RESUBMITTED for r in results)
    out.line(f"resubmitted {done} of {len(results)}", "bold")


# -- command line -----------------------------------------------------------------------------

def _common_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    # Subparsers repeat the global options with SUPPRESS defaults so `status files --json` and
    # `status --json files` both work without the subparser resetting the global value.
    default: dict[str, Any] = {"default": argparse.SUPPRESS} if suppress else {}
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--settings", metavar="PATH", help=(
        f"a {LOCAL_SETTINGS}-shaped file (default: ./{LOCAL_SETTINGS}, else ./{SAMPLE_SETTINGS})"),
        **({"default": argparse.SUPPRESS} if suppress else {"default": None}))
    source.add_argument("--env", action="store_true", help="read settings from the environment (app settings in Azure)",
                        **default)
    parser.add_argument("--json", action="store_true", help="print JSON for scripts", **default)


def _limit(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 (all) or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="./dev status", description="The service's state for operators: per-file status from the ledger, "
        "the Batch pool, failures with reasons, and resubmitting failed inputs. Works against the local stack "
        "and, with --env or --settings, against Azure.")
    _common_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, description=help_text)

    files = command("files", "per-file status from the ledger (newest first) and counts per state")
    files.add_argument("--state", choices=[s.value for s in State], help="only files in this state")
    files.add_argument("--name-prefix", metavar="P", help="only input names starting with P")
    files.add_argument("--limit", metavar="N", type=_limit, default=DEFAULT_LIMIT,
                       help=f"show at most N files (default {DEFAULT_LIMIT}; 0 = all); counts cover all")

    pool = command("pool", "pool allocation, autoscale, node and task counts, the timer's status row")

    failures = command("failures", "failed and rejected files: category, exit code, message, log location")
    failures.add_argument("--limit", metavar="N", type=_limit, default=0, help="show at most N (default all)")

    resubmit = command("resubmit", "run failed inputs again: same blob version, same task id, a fresh task spec")
    # Not a mutually exclusive group: argparse counts an absent nargs='*' positional as present.
    resubmit.add_argument("--all-failed", action="store_true", help="every file in state failed")
    resubmit.add_argument("names", nargs="*", default=[], metavar="NAME", help="input blob names or task ids")
    resubmit.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")

    for sub in (files, pool, failures, resubmit):
        _common_options(sub, suppress=True)
    return parser


def _confirm(question: str, err: Console) -> bool:
    err.print(Text(question + " [y/N] "), end="")
    try:
        answer = input()
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def run(args: argparse.Namespace, out: Output, err: Console, env: Mapping[str, str], cwd: Path) -> int:
    loaded = load_settings(use_env=args.env, settings_path=args.settings, env=env, cwd=cwd)
    settings = loaded.settings
    service = build_service(settings)
    reader = LedgerReader(service.clients.ledger_table, settings.job_id)
    if args.command == "files":
        state = State(args.state) if args.state else None
        show_files(out, files_report(reader, state, args.name_prefix, args.limit), settings)
        return EXIT_OK
    if args.command == "pool":
        show_pool(out, pool_report(service, reader))
        return EXIT_OK
    if args.command == "failures":
        show_failures(out, failures_report(service, reader, args.limit))
        return EXIT_OK
    # resubmit
    if args.all_failed == bool(args.names):
        raise StatusError("resubmit needs either --all-failed or one or more NAMEs")
    candidates = select_candidates(reader, args.names, args.all_failed)
    if not candidates:
        if out.as_json:
            out.json({"results": []})
        else:
            out.line("no failed files to resubmit", "green")
        return EXIT_OK
    runnable = [c for c in candidates if c.entry is not None and c.entry.state == State.FAILED.value]
    if runnable and not args.yes:
        listing = "\n".join(f"  {scrub(c.entry.input_name)}" for c in runnable if c.entry)
        err.print(Text(f"will resubmit {len(runnable)} failed file(s) from {loaded.source}:\n{listing}"))
        if not _confirm("resubmit them?", err):
            err.print(Text("nothing resubmitted"))
            return EXIT_INCOMPLETE
    resubmitter = Resubmitter(service)
    results = [resubmitter.run(c) for c in candidates]
    show_resubmits(out, results)
    return EXIT_OK if all(r.outcome is ResubmitOutcome.RESUBMITTED for r in results) else EXIT_INCOMPLETE


def main(argv: list[str] | None = None, *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
         stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> int:
    """Entry point for `./dev status` and `python -m devstack.status_cli`; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # --help or a usage error: argparse already printed
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE
    out = Output(stdout or sys.stdout, args.json)
    err = Console(file=stderr or sys.stderr, highlight=False, soft_wrap=True)
    try:
        return run(args, out, err, os.environ if env is None else env, Path.cwd() if cwd is None else cwd)
    except StatusError as exc:
        err.print(Text(f"error: {scrub(str(exc))}", style="red"))
        return EXIT_USAGE
    except ServiceRequestError as exc:
        err.print(Text(f"error: cannot reach the service ({scrub(str(exc))}); "
                       "locally, is the stack running (./dev start)?", style="red"))
        return EXIT_INCOMPLETE
    except AzureError as exc:
        err.print(Text(f"error: {type(exc).__name__}: {scrub(str(exc))}", style="red"))
        return EXIT_INCOMPLETE


if __name__ == "__main__":
    sys.exit(main())
