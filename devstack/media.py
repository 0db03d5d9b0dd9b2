"""Generate test and demo clips with ffmpeg's lavfi sources (no binaries in git)."""
from __future__ import annotations

import subprocess
from pathlib import Path

from devstack.ffmpeg import ffmpeg_exe


def make_clip(path: Path, seconds: float = 2.0, size: str = "320x240", audio_streams: int = 1,
              channels: int = 2, video: bool = True) -> Path:
    """Write an H.264/AAC MP4 with `audio_streams` sine tones (0 = no audio)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [ffmpeg_exe(), "-nostdin", "-y", "-loglevel", "error"]
    if video:
        cmd += ["-f", "lavfi", "-i", f"testsrc=size={size}:rate=25:duration={seconds}"]
    for n in range(audio_streams):
        cmd += ["-f", "lavfi", "-i",
                f"sine=frequency={440 + 110 * n}:sample_rate=44100:duration={seconds}"]
    inputs = (1 if video else 0) + audio_streams
    for i in range(inputs):
        cmd += ["-map", str(i)]
    if video:
        cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    if audio_streams:
        cmd += ["-c:a", "aac", "-ac", str(channels)]
    cmd += ["-f", "mp4", str(path)]
    subprocess.run(cmd, check=True)
    return path


def make_corrupt(path: Path, size: int = 4096) -> Path:
    """Bytes that start like an MP4 box but are garbage."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes((i * 7) % 251 for i in range(size)))
    return path
