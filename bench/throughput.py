"""Item 2: N clips through the whole local pipeline vs the same ffmpeg commands run directly.

Pipeline: a producer uploads N clips to Azurite (4 streams) -> the blob trigger runs the app's function
-> one Batch task each on the emulator (resource file download, the task's ffmpeg command, output file
upload) -> MP3 in Azurite. The trigger is Event Grid, as deployed in Azure (infra sets
BLOB_TRIGGER_SOURCE=EventGrid): right after each upload returns, the producer posts the BlobCreated event
to the dev host's webhook as an Event Grid subscription would. `--trigger polling` measures the dev host's
polling trigger instead (a container scan every 2 s, the local default).
The app's timer runs (every TIMER_EVERY s) and owns the pool, warmed beforehand by two clips.
Wall = first upload start -> last MP3 listed in the output container.

Raw: the same task command (`shared.ffmpeg.command_line`) on the same files from local disk, with the
same parallelism as the emulator's slots (its host-wide cap of concurrent task processes, = nproc).

Rounds alternate raw, pipeline, raw, pipeline... and the medians are compared. When the target is
missed, one more pipeline round runs under py-spy and the CPU of every component is accounted.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import httpx

from devstack.devhost.events import blob_created_event
from devstack.ffmpeg import bin_dir

from . import clips, ffmpeg_cmd, profile
from .model import Chart, Finding, ItemResult
from .pipeline import CpuLedger, Upload, our_job_ids, upload_all, wait_for_outputs, warm_pool
from .stack import LocalStack
from .stats import median

TARGET = 1.15
TIMER_EVERY = 5
POLL_INTERVAL = 2.0
EVENT_GRID, POLLING = "eventgrid", "polling"
SOURCES = {EVENT_GRID: "EventGrid", POLLING: "LogsAndContainerScan"}  # BLOB_TRIGGER_SOURCE
FUNCTION = "process_upload"


@dataclass(frozen=True)
class Size:
    files: int
    clip_seconds: int
    rounds: int


DEFAULT = Size(files=40, clip_seconds=ffmpeg_cmd.DEFAULT.long_seconds, rounds=2)
QUICK = Size(files=8, clip_seconds=ffmpeg_cmd.QUICK.long_seconds, rounds=1)


def _sources(size: Size) -> list[Path]:
    variants = [clips.clip(clips.ClipSpec(size.clip_seconds, res, ch)) for res in ("720p", "1080p") for ch in (1, 2)]
    return [variants[i % len(variants)] for i in range(size.files)]


def raw_round(sources: list[Path], slots: int, quality: int, work: Path) -> tuple[float, float, list[float]]:
    """(wall, total ffmpeg CPU, per-file walls) of running the task command on every file, `slots` at a time."""
    shared_dir = work / "shared"
    bin_dir(shared_dir)
    started = time.perf_counter()
    with ThreadPoolExecutor(slots) as pool:
        samples = list(pool.map(lambda i: ffmpeg_cmd.run_command("ours", sources[i], shared_dir, work / f"w{i}",
                                                                 quality), range(len(sources))))
    wall = time.perf_counter() - started
    shutil.rmtree(work, ignore_errors=True)
    return wall, sum(s.cpu for s in samples), [s.wall for s in samples]


@dataclass
class PipelineRound:
    wall: float                                  # first upload start -> last MP3 listed
    uploads_done: float                          # seconds after start
    first_task_start: float | None               # seconds after start (Batch executionInfo)
    task_span: float | None                      # first task start -> last task end
    tail: float | None                           # last task end -> last MP3 listed
    task_runs: list[float]                       # per task: start -> end (download, ffmpeg, upload)
    cpu: dict[str, tuple[float, float]]          # component -> (own, reaped children) CPU seconds


def pipeline_round(stack: LocalStack, values: dict[str, str], sources: list[Path], tag: str,
                   timeout: float, trigger: str = EVENT_GRID) -> PipelineRound:
    """Push every file through the stack; wall, phases (from the tasks' executionInfo) and CPU by component."""
    blobs = stack.blob_service()
    uploads = [Upload(f"{tag}/{i:03d}-{p.stem}.mp4", p) for i, p in enumerate(sources)]
    ledger = CpuLedger(stack.component_pids())
    started_utc = datetime.now(timezone.utc)
    started = time.perf_counter()
    notify = _event_grid(stack, blobs, values["INPUT_CONTAINER"]) if trigger == EVENT_GRID else None
    upload_all(blobs, values["INPUT_CONTAINER"], uploads, on_uploaded=notify)
    uploads_done = time.perf_counter() - started
    # Listing every 0.5 s keeps the watcher's own load on Azurite small; it bounds the wall's resolution.
    seen = wait_for_outputs(blobs.get_container_client(values["OUTPUT_CONTAINER"]), [u.name for u in uploads],
                            timeout, prefix=f"{tag}/", interval=0.5)
    wall = max(seen.values()) - started
    cpu = ledger.stop()
    starts, ends, runs = [], [], []
    with stack.batch_client() as batch:
        for task in (t for job in our_job_ids(batch, values["BATCH_JOB_ID"]) for t in batch.list_tasks(job)):
            info = task.execution_info
            if (task.display_name or "").startswith(f"{tag}/") and info and info.start_time and info.end_time:
                starts.append((info.start_time - started_utc).total_seconds())
                ends.append((info.end_time - started_utc).total_seconds())
                runs.append((info.end_time - info.start_time).total_seconds())
    complete = len(starts) == len(uploads)
    return PipelineRound(wall, uploads_done, min(starts) if complete else None,
                         max(ends) - min(starts) if complete else None,
                         wall - max(ends) if complete else None, runs, cpu)


def _event_grid(stack: LocalStack, blobs, container: str):
    """What an Event Grid subscription does after each upload: POST its BlobCreated event to the webhook."""
    http = httpx.Client(timeout=30)
    url = stack.webhook_url(FUNCTION)

    def post(name: str, response: dict, size: int) -> None:
        event = blob_created_event(blobs.get_blob_client(container, name).url, response["etag"], size,
                                   content_type="video/mp4")
        http.post(url, json=[event], headers={"aeg-event-type": "Notification"}).raise_for_status()
    return post


def run(quick: bool = False, work_root: Path | None = None, profile_dir: Path | None = None,
        trigger: str = EVENT_GRID) -> ItemResult:
    size = QUICK if quick else DEFAULT
    slots = os.cpu_count() or 2
    quality = ffmpeg_cmd.sample_mp3_quality()
    result = ItemResult(
        key="2", title="throughput: N files through the whole local pipeline",
        baseline=f"the same task ffmpeg command run directly on the same files, {slots} at a time "
                 "(the emulator's slots)",
        target=f"pipeline wall <= {TARGET}x raw wall (median of rounds)")
    sources = _sources(size)
    tmp = Path(tempfile.mkdtemp(prefix="bench-throughput-", dir=work_root))
    stack = LocalStack(tmp / "stack", slots=slots)
    try:
        stack.start()
        values = stack.app_settings(IDLE_GRACE_SECONDS="900")
        stack.blob_service().create_container(values["INPUT_CONTAINER"])
        values["BLOB_TRIGGER_SOURCE"] = SOURCES[trigger]
        stack.start_devhost(values, poll_interval=POLL_INTERVAL, timer_every=TIMER_EVERY)
        notify = _event_grid(stack, stack.blob_service(), values["INPUT_CONTAINER"]) if trigger == EVENT_GRID else None
        warm = warm_pool(stack, values, clips.clip(clips.ClipSpec(ffmpeg_cmd.QUICK.short_seconds, "720p", 2)),
                         on_uploaded=notify)
        raw_walls, raw_cpu, raw_files, rounds = [], [], [], []
        timeout = 120 + 10 * size.files
        for r in range(size.rounds):
            wall, cpu, per_file = raw_round(sources, slots, quality, tmp / f"raw{r}")
            raw_walls.append(wall)
            raw_cpu.append(cpu)
            raw_files += per_file
            rounds.append(pipeline_round(stack, values, sources, f"round{r}", timeout, trigger))
        ratio = median([r.wall for r in rounds]) / median(raw_walls)
        profiles = {}
        if ratio > TARGET and profile_dir is not None and profile.available():
            pids = {k: v for k, v in stack.component_pids().items() if k != "azurite"}
            recorder = profile.Recorder(pids, profile_dir / "throughput")
            try:
                pipeline_round(stack, values, sources, "profiled", timeout, trigger)
            finally:
                profiles = recorder.stop()
        _fill(result, size, slots, raw_walls, raw_cpu, raw_files, rounds, warm, profiles, trigger)
    finally:
        stack.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def _fmt(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"


def _fill(result: ItemResult, size: Size, slots: int, raw_walls: list[float], raw_cpu: list[float],
          raw_files: list[float], rounds: list[PipelineRound], warm: float,
          profiles: dict[str, profile.Profile], trigger: str) -> None:
    pipe_walls = [r.wall for r in rounds]
    cpu_maps = [r.cpu for r in rounds]
    raw, pipe = median(raw_walls), median(pipe_walls)
    ratio = pipe / raw
    result.findings = [
        Finding(f"{size.files} files ({size.clip_seconds} s clips, {trigger} trigger): wall, pipeline / raw ffmpeg",
                f"{pipe:.1f} s", f"{raw:.1f} s", ratio, f"<= {TARGET}x", ratio <= TARGET),
        Finding("files per minute, pipeline vs raw", f"{size.files / pipe * 60:.0f}/min",
                f"{size.files / raw * 60:.0f}/min", None, "", None),
    ]
    components = sorted({k for m in cpu_maps for k in m})
    cpu = {k: median([m.get(k, (0.0, 0.0))[0] for m in cpu_maps]) for k in components}
    ffmpeg_in_pipeline = median([m.get("batch-emulator", (0.0, 0.0))[1] for m in cpu_maps])
    result.columns = ["round", "raw wall s", "pipeline wall s", "ratio", "uploads done s", "first task start s",
                      "tasks first start->last end s", "last end->MP3 listed s", "raw ffmpeg CPU s",
                      "pipeline ffmpeg CPU s", *[f"{c} CPU s" for c in components]]
    result.rows = [[i + 1, f"{rw:.2f}", f"{pr.wall:.2f}", f"{pr.wall / rw:.2f}x", f"{pr.uploads_done:.2f}",
                    _fmt(pr.first_task_start), _fmt(pr.task_span), _fmt(pr.tail), f"{rc:.1f}",
                    f"{pr.cpu.get('batch-emulator', (0, 0))[1]:.1f}",
                    *[f"{pr.cpu.get(c, (0.0, 0.0))[0]:.1f}" for c in components]]
                   for i, (rw, pr, rc) in enumerate(zip(raw_walls, rounds, raw_cpu))]
    overhead = sum(cpu.values())
    result.notes = [
        f"{size.rounds} round(s) of each, alternating raw and pipeline; clips: the 4 long item-1 clips "
        f"(720p/1080p, mono/stereo) round-robin, uploaded under distinct names. Slots: {slots} concurrent "
        f"task processes (emulator --max-running-tasks = nproc); raw uses the same number of threads.",
        f"Warm pool: two warm-up clips first ({warm:.1f} s from their upload to both MP3s, the timer waking a "
        f"zero-node pool); IDLE_GRACE_SECONDS=900 keeps it warm. Trigger: "
        + ("Event Grid (each upload's BlobCreated posted to the dev host's webhook as it returns); "
           if trigger == EVENT_GRID else f"the dev host's polling scan every {POLL_INTERVAL:g} s; ")
        + f"timer every {TIMER_EVERY} s.",
        f"CPU outside ffmpeg during a pipeline round (median): {overhead:.1f} CPU-s ("
        + ", ".join(f"{k} {v:.1f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]))
        + f") against {ffmpeg_in_pipeline:.1f} CPU-s of ffmpeg; on {slots} cores that overhead alone is worth "
          f"~{overhead / slots:.1f} s of wall.",
    ]
    spans = [r.task_span for r in rounds if r.task_span is not None]
    starts = [r.first_task_start for r in rounds if r.first_task_start is not None]
    tails = [r.tail for r in rounds if r.tail is not None]
    task_runs = [t for r in rounds for t in r.task_runs]
    if task_runs:
        per_task = median(task_runs) - median(raw_files)
        result.notes.append(
            f"Per file: a task runs {median(task_runs):.2f} s in the emulator (resource-file download from "
            f"Azurite, the same ffmpeg command, MP3 upload) against {median(raw_files):.2f} s for ffmpeg alone "
            f"on local disk (medians): +{per_task:.2f} s per file, ~{per_task * size.files / slots:.1f} s of "
            f"wall over {size.files} files on {slots} slots.")
    if spans and starts and tails:
        result.notes.append(
            f"Where the pipeline's extra wall goes (medians): first task started {median(starts):.1f} s after the "
            f"first upload began (upload + container scan + trigger + task add + node dispatch); tasks ran "
            f"{median(spans):.1f} s from first start to last end (raw: {raw:.1f} s for the same commands, so "
            f"per-task download/ffmpeg/upload inside the emulator costs {median(spans) / raw:.2f}x raw); the "
            f"last MP3 was listed {median(tails):.1f} s after the last task ended.")
    if ratio > TARGET:
        biggest = max(cpu.items(), key=lambda kv: kv[1]) if cpu else ("?", 0.0)
        result.notes.append(
            f"TARGET MISSED ({ratio:.2f}x > {TARGET}x). Bottleneck: moving every file through the local "
            f"stand-ins on the same {slots} cores ffmpeg needs. Each task first downloads its MP4 from Azurite and "
            f"afterwards uploads its MP3 (time a raw run never spends), and the stand-ins' CPU competes with "
            f"ffmpeg: the largest is {biggest[0]} ({biggest[1]:.1f} CPU-s per round). In Azure, storage and the "
            "Batch service run elsewhere and only the node's transfers remain. The fixed latency at the start "
            "(container scan) weighs most on small runs.")
    hot = [f"{name}: " + "; ".join(prof.hotspots(2)) for name, prof in profiles.items() if prof.hotspots(1)]
    if hot:
        result.notes.append("Hotspots (py-spy, working frames only, share of the process's busy samples): "
                            + " | ".join(hot) + ".")
    for name, prof in profiles.items():
        if prof.samples:
            result.notes.append(f"py-spy, {name} ({prof.samples} samples while busy) — top own-time frames: "
                                + "; ".join(x.strip() for x in prof.top(6)))
            result.notes.append(f"py-spy, {name} — our code, inclusive: " + "; ".join(x.strip() for x in prof.top_ours(6)))
    result.chart = Chart(f"2. {size.files} files: wall, pipeline vs raw ffmpeg", "seconds",
                         [f"round {i + 1}" for i in range(len(rounds))],
                         {"raw ffmpeg": raw_walls, "pipeline": pipe_walls,
                          f"target ({TARGET}x raw)": [TARGET * w for w in raw_walls]})
    result.raw = {"raw_walls": raw_walls, "raw_ffmpeg_cpu": raw_cpu, "raw_file_walls": raw_files, "pipeline_rounds": [r.__dict__ for r in rounds], "warmup_seconds": warm, "slots": slots,
                  "profiles": {k: {"samples": p.samples, "top": p.top(12), "ours": p.top_ours(12)}
                               for k, p in profiles.items()}}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__.splitlines()[0])
    parser.add_argument("--trigger", choices=(EVENT_GRID, POLLING), default=EVENT_GRID)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.quick, trigger=args.trigger)
    print(json.dumps({"findings": [f.__dict__ for f in result.findings], "columns": result.columns,
                      "rows": result.rows, "notes": result.notes}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
