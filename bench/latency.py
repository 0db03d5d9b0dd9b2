"""Item 6: upload -> MP3 present, p50/p95, on a warm local stack: polling blob trigger vs Event Grid.

One stack (Azurite, emulator, dev host), the pool warmed first and kept warm (IDLE_GRACE_SECONDS=900). The
dev host is restarted between blocks to switch the app's trigger source (BLOB_TRIGGER_SOURCE):
- polling (`LogsAndContainerScan`): the dev host scans the container every 2 s (its default; on Azure the
  polling source may lag far more - minutes on an idle Consumption app);
- Event Grid (`EventGrid`, the dev host's fallback scan off): right after each upload returns, the bench
  posts the BlobCreated event to the host's webhook as an Event Grid subscription would (Event Grid's own
  delivery delay in Azure, typically under a second, is not part of this figure).
Blocks alternate (polling, Event Grid, polling, Event Grid) so drifting machine noise hits both alike.
Each sample: a random pause (0-2 s, one scan interval, so uploads meet the scan at uniform phases), upload one clip, then poll
the output blob every 50 ms. Per sample the task's Batch times split the latency into trigger (upload ->
task created), queue (created -> started), run (started -> ended) and output (ended -> MP3 seen).
The limit: the task's ffmpeg command alone on the same clip.
"""
from __future__ import annotations

import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import httpx

from devstack.devhost.events import blob_created_event
from devstack.ffmpeg import bin_dir
from shared import naming

from . import clips, ffmpeg_cmd
from .model import Chart, Finding, ItemResult
from .pipeline import find_task, output_present, warm_pool
from .stack import LocalStack
from .stats import median, percentile

POLLING, EVENT_GRID = "polling", "Event Grid"
SOURCES = {POLLING: "LogsAndContainerScan", EVENT_GRID: "EventGrid"}
POLL_INTERVAL = 2.0
FUNCTION = "process_upload"


@dataclass(frozen=True)
class Size:
    samples_per_source: int
    blocks: int


DEFAULT = Size(samples_per_source=20, blocks=2)
QUICK = Size(samples_per_source=6, blocks=1)


@dataclass
class Sample:
    source: str
    latency: float
    trigger: float | None = None
    queue: float | None = None
    run: float | None = None
    output: float | None = None


def _one(stack: LocalStack, values: dict[str, str], source: str, clip: Path, index: int, rng: random.Random,
         http: httpx.Client) -> Sample:
    blobs = stack.blob_service()
    name = f"latency/{source.replace(' ', '-').lower()}-{index:03d}.mp4"
    # A pause spread over a whole scan interval: the loop would otherwise lock onto the scanner's phase
    # (each sample ends just after a scan), which would bias polling's latency.
    time.sleep(rng.uniform(0.0, POLL_INTERVAL))
    blob = blobs.get_blob_client(values["INPUT_CONTAINER"], name)
    with open(clip, "rb") as data:
        response = blob.upload_blob(data, overwrite=True)
    uploaded_at = time.perf_counter()
    uploaded_utc = datetime.now(timezone.utc)
    if source == EVENT_GRID:
        event = blob_created_event(blob.url, response["etag"], clip.stat().st_size, content_type="video/mp4")
        http.post(stack.webhook_url(FUNCTION), json=[event], headers={"aeg-event-type": "Notification"}).raise_for_status()
    output = blobs.get_container_client(values["OUTPUT_CONTAINER"])
    deadline = time.monotonic() + 120
    while not output_present(output, name):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{source}: no MP3 for {name} after 120 s")
        time.sleep(0.05)
    sample = Sample(source, time.perf_counter() - uploaded_at)
    with stack.batch_client() as batch:
        task = find_task(batch, values["BATCH_JOB_ID"], naming.task_id(name, response["etag"]))
    info = task.execution_info if task else None
    if task and task.creation_time and info and info.start_time and info.end_time:
        seen_utc = uploaded_utc.timestamp() + sample.latency
        sample.trigger = (task.creation_time - uploaded_utc).total_seconds()
        sample.queue = (info.start_time - task.creation_time).total_seconds()
        sample.run = (info.end_time - info.start_time).total_seconds()
        sample.output = seen_utc - info.end_time.timestamp()
    return sample


def _raw_limit(clip: Path, work: Path) -> float:
    shared_dir = work / "shared"
    bin_dir(shared_dir)
    quality = ffmpeg_cmd.sample_mp3_quality()
    walls = [ffmpeg_cmd.run_command("ours", clip, shared_dir, work / f"w{i}", quality).wall for i in range(5)]
    return median(walls)


def run(quick: bool = False, work_root: Path | None = None) -> ItemResult:
    size = QUICK if quick else DEFAULT
    result = ItemResult(
        key="6", title="latency: upload -> MP3 present, warm local stack",
        baseline="the polling blob trigger (dev host scan every 2 s); the limit: the task's ffmpeg command alone",
        target="Event Grid p50 and p95 below polling's")
    clip = clips.clip(clips.ClipSpec(ffmpeg_cmd.DEFAULT.short_seconds, "720p", 2))
    tmp = Path(tempfile.mkdtemp(prefix="bench-latency-", dir=work_root))
    stack = LocalStack(tmp / "stack", slots=2)
    rng = random.Random(11)
    samples: list[Sample] = []
    try:
        stack.start()
        values = stack.app_settings(IDLE_GRACE_SECONDS="900")
        stack.blob_service().create_container(values["INPUT_CONTAINER"])
        stack.start_devhost({**values, "BLOB_TRIGGER_SOURCE": SOURCES[POLLING]}, poll_interval=POLL_INTERVAL)
        warm = warm_pool(stack, values, clip)
        per_block = max(1, size.samples_per_source // size.blocks)
        with httpx.Client(timeout=10) as http:
            for block in range(size.blocks):
                for source in (POLLING, EVENT_GRID):
                    if block or source != POLLING:  # the warm-up host is already the polling one
                        stack.start_devhost({**values, "BLOB_TRIGGER_SOURCE": SOURCES[source]},
                                            poll_interval=POLL_INTERVAL)
                    for i in range(per_block):
                        samples.append(_one(stack, values, source, clip, block * per_block + i, rng, http))
        limit = _raw_limit(clip, tmp / "raw")
    finally:
        stack.close()
        shutil.rmtree(tmp, ignore_errors=True)
    _fill(result, samples, limit, warm, clip)
    return result


def _phase(samples: list[Sample], attr: str) -> str:
    values = [getattr(s, attr) for s in samples if getattr(s, attr) is not None]
    return f"{median(values):.2f}" if values else "?"


def _fill(result: ItemResult, samples: list[Sample], limit: float, warm: float, clip: Path) -> None:
    by = {src: [s for s in samples if s.source == src] for src in (POLLING, EVENT_GRID)}
    lat = {src: [s.latency for s in group] for src, group in by.items()}
    p50 = {src: median(v) for src, v in lat.items()}
    p95 = {src: percentile(v, 95) for src, v in lat.items()}
    result.findings = [
        Finding("upload -> MP3 present, p50: Event Grid / polling", f"{p50[EVENT_GRID]:.2f} s", f"{p50[POLLING]:.2f} s",
                p50[EVENT_GRID] / p50[POLLING], "< 1.0x", p50[EVENT_GRID] < p50[POLLING]),
        Finding("upload -> MP3 present, p95: Event Grid / polling", f"{p95[EVENT_GRID]:.2f} s", f"{p95[POLLING]:.2f} s",
                p95[EVENT_GRID] / p95[POLLING], "< 1.0x", p95[EVENT_GRID] < p95[POLLING]),
        Finding("Event Grid p50 / the limit (ffmpeg alone on the clip)", f"{p50[EVENT_GRID]:.2f} s", f"{limit:.2f} s",
                p50[EVENT_GRID] / limit, "", None),
    ]
    result.columns = ["source", "samples", "p50 s", "p95 s", "min s", "max s", "trigger (upload->task) s",
                      "queue (task->start) s", "run (start->end) s", "output (end->MP3 seen) s"]
    result.rows = [[src, len(group), f"{p50[src]:.2f}", f"{p95[src]:.2f}", f"{min(lat[src]):.2f}",
                    f"{max(lat[src]):.2f}", _phase(group, "trigger"), _phase(group, "queue"), _phase(group, "run"),
                    _phase(group, "output")] for src, group in by.items()]
    result.notes = [
        f"Clip: {clip.name} ({clip.stat().st_size / 1e6:.1f} MB); its ffmpeg command alone takes {limit:.2f} s. "
        f"Phase columns are medians (Batch task times vs the bench's clock, same machine).",
        f"Warm pool: warmed by two clips ({warm:.1f} s from upload to both MP3s on a zero-node pool), kept by "
        "IDLE_GRACE_SECONDS=900; the timer runs every 5 s. Blocks alternate polling / Event Grid.",
        "Polling's trigger phase is mostly the scan wait (uniform over the 2 s interval); the run phase "
        "includes the node's resource-file download and output upload around ffmpeg.",
    ]
    result.chart = Chart("6. upload -> MP3 present (warm stack)", "seconds", ["p50", "p95"],
                         {POLLING: [p50[POLLING], p95[POLLING]], EVENT_GRID: [p50[EVENT_GRID], p95[EVENT_GRID]],
                          "ffmpeg alone": [limit, limit]})
    result.raw = {"samples": [s.__dict__ for s in samples], "limit_seconds": limit, "warmup_seconds": warm}
