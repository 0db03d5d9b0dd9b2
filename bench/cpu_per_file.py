"""CPU seconds per second of audio of the task's own ffmpeg command: the input of the price model
(docs/scaling.md, "Capacity model").

Run alone: `.venv/bin/python -m bench.cpu_per_file [--repetitions 5] [--media FILE ...]`; takes about a
minute on 2 cores. Writes bench/results/cpu_per_file.json.

What runs: `shared.ffmpeg.command_line(MP3_QUALITY)` - the exact command a Batch task runs, through
`bench.ffmpeg_cmd.run_command` (fresh task-like directory, `input.mp4` -> `output.mp3`, the pinned ffmpeg
on the node's PATH). CPU is the child's own user + system time (os.wait4 rusage), so other work on the
machine does not count; wall is spawn to exit. Baseline in the same run: decoding the first audio stream
alone (`-f null`), the floor for any command that must read the audio.

Clips (bench/clips.py, generated with the pinned ffmpeg's lavfi sources, cached): H.264 test pattern +
AAC stereo 160 kb/s of pink noise and tones, 44.1 kHz. The "typical file" is shaped like the tutorial's
own input (2:00, 640x360, AAC-LC stereo 44.1 kHz): 120 s 360p stereo. A 600 s clip shows the cost is
per second of audio (the per-file constant is small). `--media` adds your own files (for example the
tutorial's MP4) to the report; they are measured, never copied.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from devstack.ffmpeg import bin_dir

from . import clips, machine
from .ffmpeg_cmd import run_command, sample_mp3_quality
from .stats import median

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "bench" / "results" / "cpu_per_file.json"
TYPICAL = clips.ClipSpec(seconds=120, resolution="360p", channels=2)
LONG = clips.ClipSpec(seconds=600, resolution="360p", channels=2)


@dataclass(frozen=True)
class Measured:
    label: str
    audio_seconds: float
    input_bytes: int
    cpu_s: float            # median over repetitions, our command
    wall_s: float
    decode_cpu_s: float     # median, audio decode only (the floor)
    mp3_bytes: int | None

    def to_json(self) -> dict:
        return {"label": self.label, "audio_seconds": round(self.audio_seconds, 3), "input_bytes": self.input_bytes,
                "cpu_s": round(self.cpu_s, 4), "wall_s": round(self.wall_s, 4),
                "decode_cpu_s": round(self.decode_cpu_s, 4), "mp3_bytes": self.mp3_bytes,
                "cpu_s_per_audio_s": round(self.cpu_s / self.audio_seconds, 6),
                "realtime_factor_one_core": round(self.audio_seconds / self.cpu_s, 1),
                "ours_over_decode_cpu": round(self.cpu_s / self.decode_cpu_s, 2) if self.decode_cpu_s else None}


def measure(label: str, source: Path, repetitions: int, quality: int, work_root: Path) -> Measured:
    """Run our command and the decode floor `repetitions` times each, interleaved so noise hits both alike."""
    shared_dir = work_root / "shared"
    bin_dir(shared_dir)  # $AZ_BATCH_NODE_SHARED_DIR/bin/ffmpeg, as the pool's start task provides
    duration = clips.probe(source).duration
    ours, decode = [], []
    for _ in range(repetitions):
        ours.append(run_command("ours", source, shared_dir, work_root / "work", quality))
        decode.append(run_command("decode", source, shared_dir, work_root / "work", quality))
    if any(abs((s.out_duration or 0.0) - duration) > 0.15 for s in ours):
        raise RuntimeError(f"{label}: an MP3's duration differs from the input's ({duration:.2f} s)")
    return Measured(label=label, audio_seconds=duration, input_bytes=source.stat().st_size,
                    cpu_s=median([s.cpu for s in ours]), wall_s=median([s.wall for s in ours]),
                    decode_cpu_s=median([s.cpu for s in decode]), mp3_bytes=ours[-1].out_bytes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--media", type=Path, nargs="*", default=[], help="extra MP4 files to measure")
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    quality = sample_mp3_quality()
    host = machine.current()
    tmp = Path(tempfile.mkdtemp(prefix="bench-cpu-"))
    try:
        rows = [measure(f"typical: {TYPICAL.label} (generated)", clips.clip(TYPICAL), args.repetitions, quality, tmp),
                measure(f"long: {LONG.label} (generated)", clips.clip(LONG), args.repetitions, quality, tmp)]
        rows += [measure(f"your file: {path.name}", path, args.repetitions, quality, tmp) for path in args.media]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    typical = rows[0]
    result = {
        "machine": host.to_json(),
        "command": "shared.ffmpeg.command_line(MP3_QUALITY), run as a Batch task runs it (bench/ffmpeg_cmd.py)",
        "mp3_quality": quality,
        "repetitions": args.repetitions,
        "typical_file": {"audio_seconds": typical.audio_seconds, "cpu_s": round(typical.cpu_s, 4),
                         "wall_s": round(typical.wall_s, 4)},
        "cpu_s_per_audio_s": round(median([r.cpu_s / r.audio_seconds for r in rows[:2]]), 6),
        "clips": [r.to_json() for r in rows],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{host.describe()}")
    for r in rows:
        print(f"{r.label}: {r.audio_seconds:.0f} s audio, CPU {r.cpu_s:.3f} s (decode floor {r.decode_cpu_s:.3f} s), "
              f"wall {r.wall_s:.3f} s, {r.cpu_s / r.audio_seconds * 1000:.2f} ms CPU per audio second")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
