"""The blob-trigger handler: decide what one blob version is, submit it or record why not.

Plain values in (container, name, ETag, size, content type), one outcome out. Bad input is
never an exception: it becomes a `skipped` or `rejected` ledger row plus a log line, so the host
neither retries it nor poisons it. Only infrastructure failures (Batch or Table unavailable after
the SDK's retries) raise, and then the host's bounded retry is the right response.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote
from datetime import datetime, timedelta

from . import naming
from . import options as conversion_options
from .access import NodeAccess
from .batch_types import SubmitBatch
from .batch_types import AddOutcome, TaskRejected
from .clock import Clock, utc_now
from .ledger import LedgerRow, State
from .log import event, get_logger
from .job_periods import JobPeriods
from .options import ConversionOptions, OptionProblem
from .task_spec import TaskLimits, TaskRequest, build_task

_log = get_logger("submit")

_MAX_QUERY_NAMES = 2000  # percent-encoded characters of both names in the range read's filter


class LedgerStore(Protocol):
    """What the submit path needs."""

    def record(self, row: LedgerRow) -> bool:
        """Insert the row; False when a row for that blob version already exists."""
        ...

    def same_output_rows(self, id_prefix: str, input_name: str, output_name: str) -> list[LedgerRow]:
        """Rows of `input_name` (any version) and of other names that write the same MP3."""
        ...


@dataclass(frozen=True)
class BlobVersion:
    container: str
    name: str
    etag: str | None          # None: the blob was gone when the trigger looked
    size: int | None
    content_type: str | None = None
    version_id: str | None = None   # set where the account keeps blob versions: the task reads exactly this one
    modified: datetime | None = None  # when this version was written (Last-Modified)
    # The version's metadata (its per-file options, shared/options.py); None: not read yet (a listing without
    # metadata) - the submitter reads this version's own before deciding.
    metadata: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Outcome:
    state: State
    row_key: str
    reason: str | None = None
    task: AddOutcome | None = None     # set when a task was submitted
    ledger_written: bool = False       # False: a row for this version already existed


class Submitter:
    def __init__(self, *, batch: SubmitBatch, ledger: LedgerStore, access: NodeAccess, jobs: JobPeriods,
                 limits: TaskLimits, clock: Clock = utc_now,
                 input_exists: Callable[[str, str], bool] = lambda container, name: True,
                 max_input_bytes: int | None = None,
                 read_metadata: Callable[[BlobVersion], Mapping[str, str] | None] = lambda blob: {}) -> None:
        self._batch = batch
        self._ledger = ledger
        self._access = access
        self._jobs = jobs
        self._limits = limits
        self._clock = clock
        self._input_exists = input_exists  # only asked when another input claims the same MP3
        self._max_input_bytes = max_input_bytes
        self._read_metadata = read_metadata  # this exact version's metadata, None when it is gone or replaced

    def handle(self, blob: BlobVersion) -> Outcome:
        row_key = naming.task_id(blob.name, blob.etag or "")
        if blob.etag is None:
            return self._not_submitted(blob, row_key, State.SKIPPED, "blob no longer exists")
        if not naming.is_mp4(blob.name):
            return self._not_submitted(blob, row_key, State.SKIPPED, naming.not_mp4_reason(blob.name))
        problem = naming.name_problem(blob.name)
        if problem is not None:
            return self._not_submitted(blob, row_key, State.REJECTED, problem.reason)
        if not blob.size:
            return self._not_submitted(blob, row_key, State.REJECTED, "zero-byte blob")
        if self._max_input_bytes is not None and blob.size > self._max_input_bytes:
            return self._not_submitted(blob, row_key, State.REJECTED, (
                f"the upload is {blob.size / 1024**3:.1f} GiB; this service converts up to "
                f"{self._max_input_bytes / 1024**3:.1f} GiB (MAX_INPUT_BYTES: a node's disk holds the input and the MP3)"))
        metadata = blob.metadata if blob.metadata is not None else self._read_metadata(blob)
        if metadata is None:
            return self._not_submitted(blob, row_key, State.SKIPPED,
                                       "the upload was replaced or deleted before it could be submitted")
        chosen = self._options(metadata)
        if isinstance(chosen, OptionProblem):
            return self._not_submitted(blob, row_key, State.REJECTED, chosen.reason)
        return self._submit(blob, row_key, chosen)

    def add_task(self, blob: BlobVersion, options: ConversionOptions | None = None,
                 job_id: str | None = None) -> AddOutcome:
        """Add (or add again) the task of a valid MP4 version, with fresh storage access; no ledger write.
        `options` None: the version's own metadata's (a re-add reads the same version, so the same options);
        `job_id` None: the version's job (`job_for`).
        Raises TaskRejected when Batch refuses the task itself, or the version's options are invalid."""
        assert blob.etag is not None
        if options is None:
            chosen = self._options(blob.metadata or {})
            if isinstance(chosen, OptionProblem):
                raise TaskRejected(None, chosen.reason)
            options = chosen
        request = TaskRequest(task_id=naming.task_id(blob.name, blob.etag), input_container=blob.container,
                              input_name=blob.name, input_etag=blob.etag, output_name=naming.output_name(blob.name),
                              options=options)
        return self._batch.add_task(build_task(request, self._access.for_blob(blob.container, blob.name, blob.version_id),
                                               self._limits), job_id or self.job_for(blob))

    def job_for(self, blob: BlobVersion) -> str:
        """The job of the version's period: the same for every path that submits this version."""
        now = self._clock()
        return self._jobs.job_for(blob.modified or now, now)

    def _options(self, metadata: Mapping[str, str]) -> ConversionOptions | OptionProblem:
        """The options the metadata asks for, unset ones from the app's settings (MP3_QUALITY). The task id does
        not include them: metadata belongs to the blob version (any change to it makes a new ETag), so (name,
        ETag) already names them, and a settings change does not make an already-seen version new work."""
        chosen = conversion_options.from_metadata(metadata)
        return chosen.resolved(self._limits.mp3_quality) if isinstance(chosen, ConversionOptions) else chosen

    def _submit(self, blob: BlobVersion, task_id: str, options: ConversionOptions) -> Outcome:
        output_name = naming.output_name(blob.name)
        name = naming.printable_name(blob.name)
        # The read names the input and output in its URL: a very long multibyte name would not fit a request.
        # Such a name skips it - no collision check; shared/newest_wins.py still keeps its newest MP3.
        fits = len(quote(name)) + len(quote(output_name)) <= _MAX_QUERY_NAMES
        related = self._ledger.same_output_rows(naming.readable_prefix(blob.name), name, output_name) if fits else []
        twin = self._twin(blob, name, output_name, related)
        if twin is not None:
            return self._not_submitted(blob, task_id, State.REJECTED, (
                f"its MP3 {output_name!r} is already written for the input {twin!r} (names that differ only in "
                "the extension's case make the same MP3); rename one of them"))
        try:
            job_id = self.job_for(blob)  # once: the task and its row must name the same job
            added = self.add_task(blob, options, job_id)
        except TaskRejected as exc:
            return self._not_submitted(blob, task_id, State.REJECTED, f"Batch refused the task: {exc}")
        written = self._ledger.record(self._row(blob, task_id, State.QUEUED, None, output_name, task_id, options,
                                                batch_job_id=job_id))
        event(_log, logging.INFO, "upload.submitted", blob_name=blob.name, task_id=task_id, job_id=job_id,
              etag=blob.etag, size=blob.size, output_name=output_name, task=added.value, options=options.canonical(),
              ledger_row="inserted" if written else "existing")
        self._supersede_older_versions(blob, name, task_id, related)
        return Outcome(State.QUEUED, task_id, None, added, written)

    def _twin(self, blob: BlobVersion, name: str, output_name: str, related: list[LedgerRow]) -> str | None:
        """Another input, still there, whose MP3 has this upload's output name: the earlier one keeps it."""
        for row in related:
            if row.input_name != name and row.output_name == output_name and row.input_container == blob.container \
                    and row.state not in (State.REJECTED, State.SKIPPED) \
                    and self._input_exists(row.input_container, row.input_name):
                return row.input_name
        return None

    def _supersede_older_versions(self, blob: BlobVersion, name: str, task_id: str, related: list[LedgerRow]) -> None:
        """Stop the tasks of older versions of this name that are still queued or running.

        Same-name tasks write the same MP3, so whichever finishes last would win. A terminated task uploads
        nothing (outputs are uploaded on task success only), so the newest version's MP3 is the one left.
        Older means submitted before this version was even written; a row submitted later may be a newer
        version (this trigger ran late), so it is left alone - as are versions the range read could not see
        yet (two triggers at once): shared/newest_wins.py makes sure the newest MP3 is the one left."""
        if blob.modified is None:
            return
        for row in related:
            old_id = row.task_id or row.row_key
            if row.input_name == name and old_id != task_id and row.state in (State.QUEUED, State.RUNNING) \
                    and row.recorded_at is not None and row.recorded_at < blob.modified:
                stopped = self._batch.terminate_task(row.task_job, old_id)
                event(_log, logging.INFO, "upload.superseded", blob_name=name, task_id=old_id,
                      superseded_by=task_id, terminated=stopped)

    def _not_submitted(self, blob: BlobVersion, row_key: str, state: State, reason: str) -> Outcome:
        written = self._ledger.record(self._row(blob, row_key, state, reason, None, None))
        level = logging.INFO if state is State.SKIPPED else logging.WARNING
        # A name too long or hostile for a log line is still logged: log.py quotes and scrubs it.
        event(_log, level, f"upload.{state.value}", blob_name=naming.printable_name(blob.name), row_key=row_key, etag=blob.etag,
              size=blob.size, reason=reason, ledger_row="inserted" if written else "existing")
        return Outcome(state, row_key, reason, None, written)

    def _row(self, blob: BlobVersion, row_key: str, state: State, reason: str | None,
             output: str | None, task_id: str | None, options: ConversionOptions | None = None, *,
             batch_job_id: str | None = None) -> LedgerRow:
        return LedgerRow(job_id=self._jobs.prefix, batch_job_id=batch_job_id, row_key=row_key, state=state, input_container=blob.container,
                         input_name=naming.printable_name(blob.name), input_etag=blob.etag, input_size=blob.size,
                         input_content_type=blob.content_type, input_version_id=blob.version_id,
                         output_name=output, task_id=task_id,
                         recorded_at=self._clock(), reason=reason,
                         options=options.canonical() if options is not None else None)


def limits_from(mp3_quality: int, max_retries: int, max_wall_clock_minutes: int) -> TaskLimits:
    return TaskLimits(mp3_quality=mp3_quality, max_retries=max_retries,
                      max_wall_clock=timedelta(minutes=max_wall_clock_minutes))
