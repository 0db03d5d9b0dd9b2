"""Missed uploads: MP4s in the input container that have no ledger row are submitted.

Polling blob triggers can miss or delay blobs (the host's scan is best effort under load) and
Event Grid can drop events; the sweep closes that gap without its cost growing with the container.

A *pass* lists the whole container in name order, a few pages per tick (`SWEEP_PAGES_PER_TICK` of
`SWEEP_PAGE_SIZE` blobs, and never past the tick's deadline), resuming from the List Blobs
continuation marker saved in the status row. So a tick's listing cost is bounded whatever the
container holds, memory holds one page, and a pass over N blobs takes ⌈N / (page size × pages per
tick)⌉ ticks. When a pass ends, the next one starts `SWEEP_INTERVAL_SECONDS` later.

What a pass looks up: a blob is a candidate when it is old enough (modified ≥ `SWEEP_MIN_AGE_SECONDS`
ago: younger ones are the trigger's) and not already covered by the previous complete pass - which
looked at every blob modified before its own start cutoff, except those that were too young when it
listed them, i.e. modified after (its start - min age). So a pass looks up blobs modified after the
previous pass's start cutoff (minus a clock margin): one point read of the ledger per candidate,
never a scan of the ledger. The guarantee: an upload the trigger missed gets its row within one
interval plus two passes after it is `SWEEP_MIN_AGE_SECONDS` old.

Submission goes through the trigger's own `Submitter.handle`, so a blob the trigger is handling at the
same moment is harmless: the task id is deterministic (TaskExists = success) and the ledger write is
insert-only.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from azure.storage.blob import BlobServiceClient

from . import naming
from .ledger import Ledger
from .log import event, get_logger
from .submit import BlobVersion, Outcome

_log = get_logger("sweep")

_CLOCK_MARGIN = timedelta(minutes=5)  # storage vs function clock skew and listing lag


@dataclass(frozen=True)
class SweepPosition:
    """Where sweeping stands between ticks (kept in the status row)."""

    marker: str | None = None              # the pass in progress resumes here; None: at the start
    pass_cutoff: datetime | None = None    # the pass in progress: its start minus the minimum age
    covered_before: datetime | None = None  # the last complete pass's cutoff (None: no pass completed yet)

    @property
    def in_pass(self) -> bool:
        return self.pass_cutoff is not None


@dataclass
class SweepResult:
    pages: int = 0
    blobs_listed: int = 0
    candidates: int = 0
    missing: int = 0
    submitted: int = 0
    pass_completed: bool = False
    position: SweepPosition = field(default_factory=SweepPosition)
    error: str | None = None   # a page whose submissions failed: the pass resumes at that page next time


class Sweeper:
    def __init__(self, *, blob_service: BlobServiceClient, input_container: str, ledger: Ledger,
                 submit: Callable[[BlobVersion], Outcome], clock: Callable[[], datetime],
                 min_age: timedelta, page_size: int = 5000, pages_per_tick: int = 2) -> None:
        self._container = blob_service.get_container_client(input_container)
        self._input_container = input_container
        self._ledger = ledger
        self._submit = submit
        self._clock = clock
        self._min_age = min_age
        self._page_size = page_size
        self._pages_per_tick = pages_per_tick

    def run(self, position: SweepPosition, *, time_left: Callable[[], float] = lambda: 1.0) -> SweepResult:
        """List up to `pages_per_tick` pages from `position` (a new pass if none is in progress), submit
        the missed MP4s among them; stop early when `time_left()` is not positive. The returned position
        advances past each page only after that page's submissions succeeded; a failure ends the run
        with `error` set and the position at the failed page."""
        if not position.in_pass:
            position = replace(position, marker=None, pass_cutoff=self._clock() - self._min_age)
        result = SweepResult(position=position)
        pages = self._container.list_blobs(results_per_page=self._page_size).by_page(continuation_token=position.marker)
        while result.pages < self._pages_per_tick and (result.pages == 0 or time_left() > 0):
            page = next(pages, None)
            if page is None:
                break
            try:
                self._sweep_page(list(page), position.covered_before, result)
            except Exception as exc:  # noqa: BLE001 - Batch or the ledger unreachable: keep the pages done
                result.error = f"{type(exc).__name__}: {exc}"[:500]
                event(_log, logging.ERROR, "sweep.page_failed", error=result.error)
                break
            result.pages += 1
            position = replace(position, marker=pages.continuation_token)
            result.position = position
            if position.marker is None:
                break
        if position.marker is None and result.error is None:
            # The pass is complete: the next one need only look at blobs this one may have found too young.
            result.pass_completed = True
            result.position = SweepPosition(covered_before=position.pass_cutoff)
        event(_log, logging.INFO, "sweep.pages", pages=result.pages, blobs_listed=result.blobs_listed,
              candidates=result.candidates, missing=result.missing, submitted=result.submitted,
              pass_completed=result.pass_completed)
        return result

    def _sweep_page(self, blobs: list, covered_before: datetime | None, result: SweepResult) -> None:
        old_enough = self._clock() - self._min_age
        lower = covered_before - _CLOCK_MARGIN if covered_before is not None else None
        candidates: dict[str, BlobVersion] = {}
        for blob in blobs:
            result.blobs_listed += 1
            modified = blob.last_modified
            if not naming.is_mp4(blob.name) or modified is None or modified > old_enough:
                continue
            if lower is not None and modified < lower:
                continue
            content_type = blob.content_settings.content_type if blob.content_settings else None
            candidates[naming.task_id(blob.name, blob.etag)] = BlobVersion(
                container=self._input_container, name=blob.name, etag=blob.etag, size=blob.size,
                content_type=content_type, version_id=blob.version_id, modified=modified)
        result.candidates += len(candidates)
        existing = self._ledger.read_rows(list(candidates), select=["RowKey"])
        missing = [version for key, version in candidates.items() if key not in existing]
        result.missing += len(missing)
        for version in missing:
            outcome = self._submit(version)
            result.submitted += 1
            event(_log, logging.WARNING, "sweep.submitted_missed_upload", blob_name=naming.printable_name(version.name),
                  etag=version.etag, state=outcome.state.value, row_key=outcome.row_key)
