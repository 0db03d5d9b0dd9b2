"""Item 1: the task's ffmpeg command vs the tutorial's, and vs decoding the audio alone (the limit).

Commands, each run in a fresh working directory holding the clip as `input.mp4`, with the pinned
ffmpeg on PATH (as on the emulator's nodes):
- ours: `shared.ffmpeg.command_line(MP3_QUALITY)`, imported, split like the Batch node agent does
  (not in a shell; the command itself starts `/bin/sh -c`);
- tutorial: `/bin/bash -c "ffmpeg -i input.mp4 output.mp3"` — the tutorial's task command
  (Azure-Samples/batch-python-ffmpeg-tutorial, batch_python_tutorial_ffmpeg.py, add_tasks) with our fixed
  file names in place of its unquoted blob names;
- decode: demux + decode the first audio stream and discard it (`-f null`): no encoder, no muxer,
  the floor for any command that must read the audio.
Commands are interleaved round-robin per repetition so machine noise hits all three alike; wall is
spawn-to-exit, CPU is the child's own rusage (wait4). Outputs are probed: duration within
DURATION_TOLERANCE of the input's.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from devstack.ffmpeg import bin_dir
from shared.ffmpeg import INPUT_FILE, OUTPUT_FILE, command_line

from . import clips
from .model import Chart, Finding, ItemResult
from .procs import run_measured
from .stats import median

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL_COMMAND = f'/bin/bash -c "ffmpeg -i {INPUT_FILE} {OUTPUT_FILE}"'
DECODE_COMMAND = (f"ffmpeg -nostdin -hide_banner -loglevel error -i {INPUT_FILE} "
                  "-map 0:a:0 -vn -sn -dn -f null -")
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DURATION_TOLERANCE = 0.15  # seconds; LAME priming/padding is ~0.05 s
COMMANDS = ("ours", "tutorial", "decode")


@dataclass(frozen=True)
class Size:
    short_seconds: int
    long_seconds: int
    repetitions: int


DEFAULT = Size(short_seconds=10, long_seconds=120, repetitions=5)
QUICK = Size(short_seconds=5, long_seconds=30, repetitions=2)


def sample_mp3_quality() -> int:
    """The MP3 quality the app runs with by default (local.settings.sample.json)."""
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    return int(values.get("MP3_QUALITY") or 2)


def argv_for(command: str, mp3_quality: int) -> list[str]:
    if command == "ours":
        return shlex.split(command_line(mp3_quality))
    if command == "tutorial":
        return shlex.split(TUTORIAL_COMMAND)
    if command == "decode":
        return shlex.split(DECODE_COMMAND)
    raise ValueError(command)


def specs(size: Size) -> list[clips.ClipSpec]:
    return [clips.ClipSpec(seconds, resolution, channels)
            for seconds in (size.short_seconds, size.long_seconds)
            for resolution in ("720p", "1080p")
            for channels in (1, 2)]


@dataclass
class Sample:
    wall: float
    cpu: float
    out_bytes: int | None
    out_duration: float | None


def run_command(command: str, source: Path, shared_dir: Path, work: Path, mp3_quality: int) -> Sample:
    """Run one command on `source` in a fresh `work` dir laid out like a task's (input.mp4 -> output.mp3)."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    os.link(source, work / INPUT_FILE) if _same_fs(source, work) else shutil.copy(source, work / INPUT_FILE)
    env = node_env(shared_dir, work)
    run = run_measured(argv_for(command, mp3_quality), cwd=work, env=env, stderr_path=work / "stderr.txt")
    if run.returncode != 0:
        tail = (work / "stderr.txt").read_text(errors="replace")[-400:]
        log = work / "ffmpeg.log"
        tail += log.read_text(errors="replace")[-400:] if log.exists() else ""
        raise RuntimeError(f"{command} failed on {source.name} (exit {run.returncode}): {tail}")
    out = work / OUTPUT_FILE
    if command == "decode":
        return Sample(run.wall, run.cpu, None, None)
    return Sample(run.wall, run.cpu, out.stat().st_size, clips.probe(out).duration)


def node_env(shared_dir: Path, work: Path) -> dict[str, str]:
    """The environment a task sees on a node: the pool's shared bin dir first on PATH (pinned ffmpeg)."""
    return {"PATH": f"{shared_dir / 'bin'}:{NODE_PATH}", "AZ_BATCH_NODE_SHARED_DIR": str(shared_dir),
            "HOME": str(work), "LANG": "C.UTF-8"}


def _same_fs(a: Path, b: Path) -> bool:
    return a.stat().st_dev == b.stat().st_dev


def run(quick: bool = False, work_root: Path | None = None) -> ItemResult:
    size = QUICK if quick else DEFAULT
    quality = sample_mp3_quality()
    result = ItemResult(
        key="1", title="ffmpeg command per file",
        baseline=f"the tutorial's `{TUTORIAL_COMMAND}`; the limit: audio decode only (`-f null`)",
        target="ours no slower than the tutorial: CPU and wall per file <= 1.05x (noise margin), median over clips, "
               f"and every MP3's duration within {DURATION_TOLERANCE} s of its input")
    tmp = Path(tempfile.mkdtemp(prefix="bench-ffmpeg-", dir=work_root))
    try:
        shared_dir = tmp / "shared"
        bin_dir(shared_dir)  # $AZ_BATCH_NODE_SHARED_DIR/bin/ffmpeg, as the pool's start task provides
        per_clip: list[dict] = []
        for spec in specs(size):
            source = clips.clip(spec)
            expected = clips.probe(source).duration
            samples: dict[str, list[Sample]] = {c: [] for c in COMMANDS}
            for _ in range(size.repetitions):
                for command in COMMANDS:
                    samples[command].append(run_command(command, source, shared_dir, tmp / "work", quality))
            per_clip.append(_summarise(spec, source, expected, samples))
        _fill(result, per_clip, quality, size)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def _summarise(spec: clips.ClipSpec, source: Path, expected: float, samples: dict[str, list[Sample]]) -> dict:
    row: dict = {"clip": spec.label, "seconds": spec.seconds, "input_bytes": source.stat().st_size,
                 "expected_duration": expected}
    for command, runs in samples.items():
        row[f"{command}_wall"] = median([s.wall for s in runs])
        row[f"{command}_cpu"] = median([s.cpu for s in runs])
        if command != "decode":
            row[f"{command}_bytes"] = runs[-1].out_bytes
            row[f"{command}_duration_error"] = max(abs((s.out_duration or 0.0) - expected) for s in runs)
    return row


def _fill(result: ItemResult, per_clip: list[dict], quality: int, size: Size) -> None:
    def kbps(row: dict, command: str) -> float:
        return row[f"{command}_bytes"] * 8 / 1000 / row["expected_duration"]

    wall_ratio = median([r["ours_wall"] / r["tutorial_wall"] for r in per_clip])
    cpu_ratio = median([r["ours_cpu"] / r["tutorial_cpu"] for r in per_clip])
    floor_ratio = median([r["ours_wall"] / r["decode_wall"] for r in per_clip])
    durations_ok = sum(1 for r in per_clip for c in ("ours", "tutorial")
                       if r[f"{c}_duration_error"] <= DURATION_TOLERANCE)
    checked = 2 * len(per_clip)
    ours_rt = median([r["expected_duration"] / r["ours_wall"] for r in per_clip])
    result.findings = [
        Finding("wall per file, ours / tutorial (median of per-clip medians)",
                f"{median([r['ours_wall'] for r in per_clip]):.2f} s", f"{median([r['tutorial_wall'] for r in per_clip]):.2f} s",
                wall_ratio, "<= 1.05x", wall_ratio <= 1.05),
        Finding("CPU per file, ours / tutorial", f"{median([r['ours_cpu'] for r in per_clip]):.2f} s",
                f"{median([r['tutorial_cpu'] for r in per_clip]):.2f} s", cpu_ratio, "<= 1.05x", cpu_ratio <= 1.05),
        Finding("wall per file, ours / audio decode only (the limit)", f"{median([r['ours_wall'] for r in per_clip]):.2f} s",
                f"{median([r['decode_wall'] for r in per_clip]):.2f} s", floor_ratio, "", None),
        Finding("MP3 duration within tolerance (ours and tutorial)", f"{durations_ok}/{checked}", "", None,
                f"{checked}/{checked}", durations_ok == checked),
    ]
    result.columns = ["clip", "input MB", "ours wall s", "tutorial wall s", "decode wall s", "ours CPU s",
                      "tutorial CPU s", "decode CPU s", "ours kb/s", "tutorial kb/s", "max |dur err| s",
                      "ours/tutorial wall"]
    result.rows = [[r["clip"], f"{r['input_bytes'] / 1e6:.1f}", f"{r['ours_wall']:.3f}", f"{r['tutorial_wall']:.3f}",
                    f"{r['decode_wall']:.3f}", f"{r['ours_cpu']:.3f}", f"{r['tutorial_cpu']:.3f}",
                    f"{r['decode_cpu']:.3f}", f"{kbps(r, 'ours'):.0f}", f"{kbps(r, 'tutorial'):.0f}",
                    f"{max(r['ours_duration_error'], r['tutorial_duration_error']):.3f}",
                    f"{r['ours_wall'] / r['tutorial_wall']:.2f}x"] for r in per_clip]
    result.notes = [
        f"{size.repetitions} repetitions per clip and command, interleaved; medians. Sequential (one process "
        "at a time), so wall ~ CPU of one core.",
        f"ours = `shared.ffmpeg.command_line({quality})` (MP3_QUALITY from local.settings.sample.json): "
        "libmp3lame VBR -q:a, first audio stream only, video/subtitle/data streams skipped. The tutorial's "
        "command lets ffmpeg pick streams and encode libmp3lame at its default 128 kb/s CBR, so its MP3s are "
        "smaller but lower quality; this compares per-file cost, not equal quality.",
        f"ours converts audio at a median {ours_rt:.0f}x real time on one core.",
        "Clips: lavfi test pattern video (H.264 ultrafast, 25 fps) + pink noise and a tone per channel "
        "(AAC 96k mono / 160k stereo), generated once and cached (bench/clips.py).",
    ]
    labels = [r["clip"] for r in per_clip]
    result.chart = Chart("1. ffmpeg wall per file (median)", "seconds", labels,
                         {c: [r[f"{c}_wall"] for r in per_clip] for c in COMMANDS})
    result.raw = {"per_clip": per_clip, "mp3_quality": quality, "repetitions": size.repetitions}
