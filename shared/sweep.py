"""Missed uploads: MP4s in the input container that have no ledger row are submitted.

Polling blob triggers can miss or delay blobs (the host's scan is best effort under load) and
Event Grid can drop events; the sweep closes that gap. It runs on its own cadence
(SWEEP_INTERVAL_SECONDS, less often than every tick) and costs one List Blobs call per 5,000 blobs
plus a point read per *new* MP4: only blobs modified since the previous sweep's cutoff are looked
up (minus a margin for clock skew), and blobs younger than SWEEP_MIN_AGE_SECONDS are left to the
trigger. Submission goes through the trigger's own `Submitter.handle`, so a blob the trigger is
handling at the same moment is harmless: the task id is deterministic (TaskExists = success) and
the ledger write is insert-only.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from azure.storage.blob import BlobServiceClient

from . import naming
from .ledger import Ledger
from .log import event, get_logger
from .submit import BlobVersion, Outcome

_log = get_logger("sweep")

_CLOCK_MARGIN = timedelta(minutes=5)  # storage vs function clock skew and listing lag
_SCAN_MIN_CANDIDATES = 150


@dataclass
class SweepResult:
    blobs_listed: int = 0
    candidates: int = 0
    missing: int = 0
    submitted: int = 0
    cutoff: datetime | None = None  # the next sweep's `since`; None when this one did not finish


class Sweeper:
    def __init__(self, *, blob_service: BlobServiceClient, input_container: str, ledger: Ledger,
                 submit: Callable[[BlobVersion], Outcome], clock: Callable[[], datetime],
                 min_age: timedelta) -> None:
        self._container = blob_service.get_container_client(input_container)
        self._input_container = input_container
        self._ledger = ledger
        self._submit = submit
        self._clock = clock
        self._min_age = min_age

    def run(self, since: datetime | None) -> SweepResult:
        """Submit MP4s modified in [since - margin, now - min_age] that have no ledger row."""
        result = SweepResult()
        cutoff = self._clock() - self._min_age
        lower = since - _CLOCK_MARGIN if since is not None else None
        candidates: dict[str, BlobVersion] = {}
        for blob in self._container.list_blobs():
            result.blobs_listed += 1
            modified = blob.last_modified
            if not naming.is_mp4(blob.name) or modified is None or modified > cutoff:
                continue
            if lower is not None and modified < lower:
                continue
            content_type = blob.content_settings.content_type if blob.content_settings else None
            version = BlobVersion(container=self._input_container, name=blob.name, etag=blob.etag,
                                  size=blob.size, content_type=content_type, version_id=blob.version_id,
                                  modified=modified)
            candidates[naming.task_id(blob.name, blob.etag)] = version
        result.candidates = len(candidates)
        # The first sweep looks at every MP4: one paged scan of the ledger's keys beats a read per blob.
        existing = self._ledger.read_rows(list(candidates), scan=since is None and len(candidates) > _SCAN_MIN_CANDIDATES,
                                          select=["RowKey"])
        missing = [version for key, version in candidates.items() if key not in existing]
        result.missing = len(missing)
        for version in missing:
            outcome = self._submit(version)  # infrastructure failures raise: the cutoff is not advanced
            result.submitted += 1
            event(_log, logging.WARNING, "sweep.submitted_missed_upload", blob_name=naming.printable_name(version.name),
                  etag=version.etag, state=outcome.state.value, row_key=outcome.row_key)
        result.cutoff = cutoff
        event(_log, logging.INFO, "sweep.done", blobs_listed=result.blobs_listed, candidates=result.candidates,
              missing=result.missing, submitted=result.submitted)
        return result
