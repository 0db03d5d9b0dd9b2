"""The producer's side: upload files, learn each one's fate, fetch the MP3s. No printing here (ops/producer_cli.py).

- Uploads go straight to the input container with the per-file options as blob metadata (validated here with
  the app's own shared/options.py, so a typo fails before anything is sent). A block blob is committed at
  once (Put Blob, or Put Block List after the blocks): an interrupted upload leaves the name as it was.
- Outcomes come from the completion events on the storage queue (EVENTS_SINK queue/both), matched on the input
  name and the ETag this upload got; events of other uploads are left in the queue (visible again seconds
  later), ours are deleted once read, duplicates recognised by their id. Without a queue the ledger row of each
  version is read (one point read per file and poll: the row key is the task id, derived from name and ETag).
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContentSettings

from shared import naming
from shared.events import TYPE_PREFIX
from shared.ledger import OUTCOME_STATES, Ledger, LedgerRow, State
from shared.options import ConversionOptions, OptionProblem, from_metadata

UPLOAD_WORKERS = 4
_OTHERS_BACK_AFTER = 2        # seconds another consumer's event stays invisible after we looked at it
_POLL_SECONDS = 2.0


class ProducerError(Exception):
    """A problem the producer can act on (bad option, no such file); printed without a traceback."""


@dataclass(frozen=True)
class Upload:
    local: Path
    blob_name: str
    size: int


@dataclass
class Result:
    upload: Upload
    etag: str | None = None          # None: not uploaded
    started: float = 0.0             # time.monotonic() when the upload began
    outcome: str | None = None       # succeeded / failed / rejected / skipped; None: no outcome yet
    reason: str | None = None
    event_id: str | None = None
    output_name: str | None = None
    seconds: float | None = None     # upload start -> outcome known
    downloaded: Path | None = None
    error: str | None = None         # the upload itself failed


def parse_options(pairs: Iterable[str]) -> dict[str, str]:
    """`--option key=value` pairs -> blob metadata, checked against the app's closed sets."""
    metadata: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ProducerError(f"--option {pair!r}: expected key=value, e.g. mp3_bitrate=128k")
        metadata[key.strip().lower()] = value.strip()
    checked = from_metadata(metadata)
    if isinstance(checked, OptionProblem):
        raise ProducerError(checked.reason)
    assert isinstance(checked, ConversionOptions)
    return metadata


def plan(paths: Iterable[str], prefix: str | None) -> list[Upload]:
    """Files to upload and their blob names: a file keeps its own name, a folder's files their path below it,
    all under `prefix` (a folder in the container). Hidden files and folders are left out."""
    base = PurePosixPath(prefix.strip("/")) if prefix and prefix.strip("/") else None
    uploads: list[Upload] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            pairs = [(p, PurePosixPath(*p.relative_to(path).parts)) for p in files]
        elif path.is_file():
            pairs = [(path, PurePosixPath(path.name))]
        else:
            raise ProducerError(f"{raw}: no such file or folder")
        for local, relative in pairs:
            name = str(base / relative) if base else str(relative)
            uploads.append(Upload(local, name, local.stat().st_size))
    names = [u.blob_name for u in uploads]
    if len(set(names)) != len(names):
        raise ProducerError("two files would get the same blob name: " +
                            next(n for n in names if names.count(n) > 1))
    return uploads


class Cancelled(Exception):
    """The producer stopped (Ctrl-C): an upload still sending blocks stops before committing them."""


class Uploader:
    """Concurrent uploads; `on_bytes(n)` is called as bytes go out (the progress bar). `cancel()` makes uploads
    still sending stop at their next block: their blocks are never committed, so the name keeps what it had."""

    def __init__(self, blob_service: BlobServiceClient, container: str, metadata: Mapping[str, str]) -> None:
        self._container = blob_service.get_container_client(container)
        self._metadata = dict(metadata)
        self.in_flight: set[str] = set()
        self._lock = threading.Lock()
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    def upload(self, result: Result, on_bytes: Callable[[int], None]) -> Result:
        upload = result.upload
        sent = [0]

        def hook(current: int, total: int | None) -> None:
            on_bytes(current - sent[0])
            sent[0] = current
            if self._cancelled.is_set() and current < upload.size:
                raise Cancelled()

        if self._cancelled.is_set():
            return result
        with self._lock:
            self.in_flight.add(upload.blob_name)
        result.started = time.monotonic()
        try:
            content_type = "video/mp4" if naming.is_mp4(upload.blob_name) else None
            with upload.local.open("rb") as data:
                props = self._container.get_blob_client(upload.blob_name).upload_blob(
                    data, length=upload.size, overwrite=True, metadata=self._metadata or None,
                    content_settings=ContentSettings(content_type=content_type) if content_type else None,
                    progress_hook=hook, max_concurrency=2)
            result.etag = props["etag"]
            on_bytes(upload.size - sent[0])
        except Cancelled:
            result.error = "cancelled before its blocks were committed"
        except Exception as exc:  # noqa: BLE001 - reported per file in the summary
            result.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        finally:
            with self._lock:
                self.in_flight.discard(upload.blob_name)
        return result


def _etag(value: str | None) -> str:
    return naming.normalize_etag(value or "")


class QueueWatcher:
    """Completion events from the queue, for the uploads in `waiting` (blob name -> result)."""

    def __init__(self, queue_client: Any, container: str) -> None:
        self._queue = queue_client
        self._container = container
        self.seen_ids: set[str] = set()
        self.duplicates = 0

    def poll(self, waiting: Mapping[str, Result]) -> list[Result]:
        """One receive of up to 32 messages: our events settle their result and are deleted, others are left."""
        done: list[Result] = []
        try:
            messages = list(self._queue.receive_messages(messages_per_page=32, max_messages=32,
                                                         visibility_timeout=_OTHERS_BACK_AFTER))
        except ResourceNotFoundError:
            return done    # the app makes the queue with its first event: nothing to read yet
        for message in messages:
            event = _parse(message.content)
            result = _match(event, waiting, self._container) if event else None
            if result is None:
                continue   # not ours (another upload, another consumer's): visible again in seconds
            self._queue.delete_message(message)
            if event["id"] in self.seen_ids:
                self.duplicates += 1
                continue
            self.seen_ids.add(event["id"])
            if result.outcome is None:
                _settle_from_event(result, event)
                done.append(result)
        return done


def _parse(content: str) -> dict[str, Any] | None:
    try:
        event = json.loads(content)
    except (TypeError, ValueError):
        return None
    if not isinstance(event, dict) or not str(event.get("type", "")).startswith(TYPE_PREFIX):
        return None
    return event


def _match(event: dict[str, Any], waiting: Mapping[str, Result], container: str) -> Result | None:
    data = event.get("data") or {}
    source = data.get("input") or {}
    result = waiting.get(source.get("name"))
    if result is None or source.get("container") != container or _etag(source.get("etag")) != _etag(result.etag):
        return None
    return result


def _settle_from_event(result: Result, event: dict[str, Any]) -> None:
    data = event["data"]
    result.outcome = data.get("outcome")
    result.reason = data.get("reason")
    result.event_id = event["id"]
    result.output_name = (data.get("output") or {}).get("name")
    result.seconds = round(time.monotonic() - result.started, 1)


class LedgerWatcher:
    """Without a queue: each waiting version's ledger row, one point read per file and poll."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def poll(self, waiting: Mapping[str, Result]) -> list[Result]:
        pending = [r for r in waiting.values() if r.outcome is None and r.etag]
        keys = {naming.task_id(r.upload.blob_name, r.etag or ""): r for r in pending}
        rows = self._ledger.read_rows(list(keys))
        done = []
        for key, stored in rows.items():
            row = LedgerRow.from_entity(stored.entity, stored.etag)
            state = row.state.value if isinstance(row.state, State) else str(row.state)
            if state in OUTCOME_STATES:
                result = keys[key]
                result.outcome, result.reason = state, None if state == State.SUCCEEDED.value else row.reason
                result.event_id, result.output_name = row.event_id, row.output_name
                result.seconds = round(time.monotonic() - result.started, 1)
                done.append(result)
        return done


def wait(watcher: QueueWatcher | LedgerWatcher, results: list[Result], *, timeout: float,
         on_done: Callable[[Result], None], sleep: Callable[[float], None] = time.sleep) -> list[Result]:
    """Poll until every uploaded file has an outcome or `timeout` seconds pass; the ones still waiting."""
    waiting = {r.upload.blob_name: r for r in results if r.etag and r.outcome is None}
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        finished = watcher.poll(waiting)
        for result in finished:
            waiting.pop(result.upload.blob_name, None)
            on_done(result)
        if not finished:
            sleep(_POLL_SECONDS if isinstance(watcher, LedgerWatcher) else 0.5)
    return list(waiting.values())


def download(blob_service: BlobServiceClient, container: str, result: Result, out: Path, prefix: str | None) -> None:
    """The MP3 of a success into `out`, at its name below the prefix (folders kept); never outside `out`."""
    if result.outcome != State.SUCCEEDED.value or not result.output_name:
        return
    name = result.output_name
    base = (prefix or "").strip("/")
    relative = name[len(base) + 1:] if base and name.startswith(base + "/") else name
    target = (out / relative).resolve()
    if out.resolve() not in target.parents:
        raise ProducerError(f"refusing to write {relative!r} outside {out}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as handle:
        blob_service.get_blob_client(container, name).download_blob().readinto(handle)
    result.downloaded = target


@dataclass
class Summary:
    results: list[Result] = field(default_factory=list)

    @property
    def failed(self) -> list[Result]:
        """Files that did not convert: failed, rejected, upload errors, or no outcome in time."""
        return [r for r in self.results
                if r.error or r.outcome in (State.FAILED.value, State.REJECTED.value) or (r.etag and r.outcome is None)]
