"""Scale mode: task tries simulated instead of run (BATCH_EMULATOR_TASK_EXECUTION=simulate).

A simulated try runs no process, downloads no resource file and makes no directory: the scheduler holds the
task's node slot for a duration drawn from `simulated_duration`, then completes it with exit code 0 (or 1 for a
`simulated_failure_rate` share of tries, retried like any nonzero exit). Output files whose upload condition
holds are written as a few bytes each (`simulated_outputs=tiny`, with the task's upload headers, so metadata
such as an MP3's source ETag is there) by a small uploader pool, or not at all (`none`). Patterns with
wildcards match nothing (no file exists). Start tasks succeed at once. Everything else - states, slots,
retries, requeues, terminate, delete, counts, listing - is the emulator's usual code, so the app sees the
same service at 100,000 tasks a day on a 2-core machine.
"""
from __future__ import annotations

import heapq
import logging
import random
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone

from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from .config import EmulatorConfig
from .executor import (FAILURE_EXIT_CODE, FILE_UPLOAD_CONTAINER_NOT_FOUND, FILE_UPLOAD_MISC, TASK_ENDED_WALL_CLOCK,
                       WALL_CLOCK_EXIT_CODE, StorageAccess, TaskLaunch, TaskOutcome, _blob_name, _condition_holds,
                       _has_magic, task_directory)
from .storage_transfer import AccountKeyAccess, UploadOptions, container_client, redact_url

log = logging.getLogger("devstack.batch_emulator.simulation")

UPLOAD_WORKERS = 4
_CLIENT_CACHE = 64


@dataclass(order=True)
class _Due:
    at: float                                   # time.monotonic() when the try ends
    order: int
    ref: str = field(compare=False)
    token: int = field(compare=False)
    launch: TaskLaunch = field(compare=False)
    exit_code: int = field(compare=False)
    wall_clock: bool = field(compare=False)     # ended by maxWallClockTime, not by its own exit
    started: datetime = field(compare=False)


class Simulation:
    """Owned by the scheduler; `start`, `due` and `next_at` are called under the backend lock."""

    def __init__(self, config: EmulatorConfig, storage: StorageAccess) -> None:
        self._cfg = config
        self._rng = random.Random(config.simulated_seed)
        self._storage = storage
        self._heap: list[_Due] = []
        self._order = 0
        self._uploads = ThreadPoolExecutor(max_workers=UPLOAD_WORKERS, thread_name_prefix="batch-sim-upload")
        self._clients: OrderedDict[str, ContainerClient] = OrderedDict()
        self._clients_lock = threading.Lock()
        self._key_access: AccountKeyAccess | None = None
        log.info("scale mode: task tries are simulated (duration %s, outputs %s, failure share %g)",
                 config.simulated_duration.text(), config.simulated_outputs, config.simulated_failure_rate)

    # --- timing (lock held) ----------------------------------------------------------------------
    def start(self, ref: str, token: int, launch: TaskLaunch, now_mono: float, now: datetime) -> None:
        seconds = self._cfg.simulated_duration.draw(self._rng)
        exit_code = 1 if self._rng.random() < self._cfg.simulated_failure_rate else 0
        wall_clock = launch.max_wall_clock is not None and seconds > launch.max_wall_clock.total_seconds()
        if wall_clock:
            assert launch.max_wall_clock is not None
            seconds = launch.max_wall_clock.total_seconds()
        self._order += 1
        heapq.heappush(self._heap,
                       _Due(now_mono + seconds, self._order, ref, token, launch, exit_code, wall_clock, now))

    def next_at(self) -> float | None:
        return self._heap[0].at if self._heap else None

    def due(self, now_mono: float) -> list[_Due]:
        out = []
        while self._heap and self._heap[0].at <= now_mono:
            out.append(heapq.heappop(self._heap))
        return out

    # --- outcomes ------------------------------------------------------------------------------------
    def needs_upload(self, item: _Due) -> bool:
        if self._cfg.simulated_outputs == "none" or item.wall_clock:
            return False
        return any(_condition_holds(spec, item.exit_code) and not _has_magic(str(spec.get("filePattern") or ""))
                   for spec in item.launch.output_files)

    def upload_then(self, item: _Due, record: Callable[[_Due, TaskOutcome], None]) -> None:
        """Write the try's tiny outputs on the uploader pool, then `record` the outcome (it takes the lock)."""
        def work() -> None:
            try:
                outcome = self.outcome(item, self._upload(item))
            except Exception:  # noqa: BLE001 - a bug here must still complete the task
                log.exception("simulated upload crashed for %s", item.ref)
                outcome = self.outcome(item, FILE_UPLOAD_MISC.info([("Message", "simulated upload crashed")]))
            record(item, outcome)
        self._uploads.submit(work)

    def outcome(self, item: _Due, upload_failure: dict | None = None) -> TaskOutcome:
        end = datetime.now(timezone.utc)
        task_dir = task_directory(item.launch.node_root, item.launch.job_id, item.launch.task_id)
        if item.wall_clock:
            return TaskOutcome(WALL_CLOCK_EXIT_CODE, "failure", TASK_ENDED_WALL_CLOCK.info(), item.started, end,
                               False, task_dir)
        if item.exit_code != 0:
            info = FAILURE_EXIT_CODE.info([("Message", "The task process exited with an unexpected exit code"),
                                           ("AdditionalErrorCode", FAILURE_EXIT_CODE.code)])
            return TaskOutcome(item.exit_code, "failure", info, item.started, end, True, task_dir)
        if upload_failure is not None:
            return TaskOutcome(0, "failure", upload_failure, item.started, end, False, task_dir)
        return TaskOutcome(0, "success", None, item.started, end, False, task_dir)

    @staticmethod
    def start_task_outcome(launch: TaskLaunch, now: datetime) -> TaskOutcome:
        return TaskOutcome(0, "success", None, now, now, False,
                           task_directory(launch.node_root, launch.job_id, launch.task_id))

    def close(self) -> None:
        self._uploads.shutdown(wait=True, cancel_futures=True)

    # --- tiny outputs --------------------------------------------------------------------------------
    def _upload(self, item: _Due) -> dict | None:
        failure: dict | None = None
        for spec in item.launch.output_files:
            pattern = str(spec.get("filePattern") or "")
            if not _condition_holds(spec, item.exit_code) or _has_magic(pattern):
                continue
            container_spec = (spec.get("destination") or {}).get("container") or {}
            url = str(container_spec.get("containerUrl") or "")
            name = _blob_name(container_spec.get("path"), pattern.rsplit("/", 1)[-1], has_wildcards=False)
            body = f"simulated {pattern} of task {item.launch.task_id} (emulator scale mode)\n".encode()
            try:
                options = UploadOptions.from_upload_headers(container_spec.get("uploadHeaders") or [])
                self._container(url, container_spec.get("identityReference")).upload_blob(
                    name, body, overwrite=True, content_settings=options.content_settings, metadata=options.metadata,
                    **({"headers": options.extra_headers} if options.extra_headers else {}))
            except ResourceNotFoundError as exc:
                code = FILE_UPLOAD_CONTAINER_NOT_FOUND if getattr(exc, "error_code", None) == "ContainerNotFound" \
                    else FILE_UPLOAD_MISC
                failure = failure or code.info([("FilePattern", pattern), ("Message", "HTTP 404")])
            except (HttpResponseError, AzureError, ValueError) as exc:
                log.warning("simulated upload failed for %s to %s: %s", item.ref, redact_url(url), type(exc).__name__)
                failure = failure or FILE_UPLOAD_MISC.info([("FilePattern", pattern), ("Message", type(exc).__name__)])
        return failure

    def _container(self, url: str, identity_reference: dict | None) -> ContainerClient:
        key = f"{bool(identity_reference)}|{url}"
        with self._clients_lock:
            client = self._clients.get(key)
            if client is not None:
                self._clients.move_to_end(key)
                return client
        access = None
        if identity_reference:
            if self._key_access is None:
                self._key_access = AccountKeyAccess.from_connection_string(self._storage.connection_string or "")
            access = self._key_access
        client = container_client(url, access)
        with self._clients_lock:
            self._clients[key] = client
            while len(self._clients) > _CLIENT_CACHE:
                self._clients.popitem(last=False)
        return client
