"""Helpers shared by the pipeline items (2, 3, 6): uploads, waiting for MP3s, warming the pool, CPU ledgers."""
from __future__ import annotations

import resource
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared import naming

from .procs import cpu_split
from .stack import LocalStack


@dataclass(frozen=True)
class Upload:
    name: str
    source: Path


def upload_all(blobs: BlobServiceClient, container: str, uploads: Iterable[Upload], threads: int = 4,
               on_uploaded: Callable[[str, dict, int], None] | None = None) -> dict[str, dict]:
    """Upload like a producer would (a few parallel streams); name -> the upload's response (etag ...).
    `on_uploaded(name, response, size)` runs right after each upload returns (an Event Grid delivery)."""
    def put(item: Upload) -> tuple[str, dict]:
        with open(item.source, "rb") as data:
            response = blobs.get_blob_client(container, item.name).upload_blob(data, overwrite=True)
        if on_uploaded is not None:
            on_uploaded(item.name, response, item.source.stat().st_size)
        return item.name, response
    with ThreadPoolExecutor(threads) as pool:
        return dict(pool.map(put, list(uploads)))


def wait_for_outputs(container: ContainerClient, inputs: Iterable[str], timeout: float, prefix: str | None = None,
                     interval: float = 0.2) -> dict[str, float]:
    """Poll the output container until every input's MP3 is there; input name -> perf_counter when first seen."""
    expected = {naming.output_name(name): name for name in inputs}
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < len(expected):
        now = time.perf_counter()
        try:
            for blob in container.list_blobs(name_starts_with=prefix):
                if blob.name in expected and expected[blob.name] not in seen and blob.size > 0:
                    seen[expected[blob.name]] = now
        except ResourceNotFoundError:
            pass  # the app creates its output container on its first invocation
        if len(seen) < len(expected):
            if time.monotonic() > deadline:
                missing = sorted(set(expected.values()) - set(seen))
                raise TimeoutError(f"{len(missing)} MP3(s) missing after {timeout:.0f}s, e.g. {missing[:3]}")
            time.sleep(interval)
    return seen


def output_present(container: ContainerClient, input_name: str) -> bool:
    try:
        return container.get_blob_client(naming.output_name(input_name)).get_blob_properties().size > 0
    except ResourceNotFoundError:
        return False


def warm_pool(stack: LocalStack, values: dict[str, str], source: Path, count: int = 2, timeout: float = 180,
              on_uploaded: Callable[[str, dict, int], None] | None = None) -> float:
    """Upload `count` warm-up clips and wait for their MP3s: the timer wakes the pool. Returns the seconds taken."""
    blobs = stack.blob_service()
    names = [f"warmup/{i}.mp4" for i in range(count)]
    started = time.perf_counter()
    upload_all(blobs, values["INPUT_CONTAINER"], [Upload(n, source) for n in names], on_uploaded=on_uploaded)
    seen = wait_for_outputs(blobs.get_container_client(values["OUTPUT_CONTAINER"]), names, timeout, prefix="warmup/")
    return max(seen.values()) - started


class CpuLedger:
    """CPU seconds spent by each stack component (own and reaped children) and by this process, over a window."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = dict(pids)
        self._start = self._read()

    def _read(self) -> dict[str, tuple[float, float]]:
        out = {}
        for name, pid in self.pids.items():
            try:
                out[name] = cpu_split(pid)
            except (FileNotFoundError, ProcessLookupError):
                out[name] = (0.0, 0.0)
        me = resource.getrusage(resource.RUSAGE_SELF)
        out["bench driver"] = (me.ru_utime + me.ru_stime, 0.0)
        return out

    def stop(self) -> dict[str, tuple[float, float]]:
        end = self._read()
        return {name: (end[name][0] - self._start[name][0], end[name][1] - self._start[name][1]) for name in end}


def our_job_ids(batch, prefix: str) -> list[str]:
    """The app's period jobs (shared/job_periods.py: `<BATCH_JOB_ID>-YYYYMMDD-HHMMSS`, `-late`)."""
    return [job.id for job in batch.list_jobs(select=["id"]) if job.id.startswith(f"{prefix}-")]


def find_task(batch, prefix: str, task_id: str):
    """A task of the app's by id, in whichever period job holds it; None when none does."""
    for job_id in our_job_ids(batch, prefix):
        try:
            return batch.get_task(job_id, task_id)
        except ResourceNotFoundError:
            continue
    return None

