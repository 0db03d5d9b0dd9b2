"""Benchmark clips: H.264 video + AAC audio that sounds like content, generated with lavfi and cached.

devstack/media.make_clip writes pure sine tones: fine for tests, but a VBR MP3 encoder squeezes a
sine to ~40 kb/s, which would make output sizes (and encoder CPU) look far better than on real
audio. Benchmark clips mix pink noise with a tone per channel (independent per channel, so stereo
is real stereo), which encodes near the bitrates of music. The video is lavfi's test pattern at
25 fps (encoded once per size and duration, then muxed with each audio layout).

Clips are cached in the user's cache directory ($XDG_CACHE_HOME or ~/.cache, mp4-to-mp3-bench/clips),
keyed by their parameters, so a second run skips generation. (Not under .devstack/: the one-command run's
tests may wipe that directory while a benchmark runs.) Everything goes through the pinned ffmpeg (devstack/ffmpeg.py).
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devstack.ffmpeg import ffmpeg_exe

CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mp4-to-mp3-bench" / "clips"
_GENERATOR = "v1"   # bump when the recipe changes, so stale cached clips are not reused
_DURATION_RE = re.compile(r"Duration: (\d+):(\d+):(\d+\.\d+)")
_SIZES = {"360p": "640x360", "720p": "1280x720", "1080p": "1920x1080"}


@dataclass(frozen=True)
class ClipSpec:
    seconds: int
    resolution: str        # "360p" | "720p" | "1080p"
    channels: int          # 1 | 2

    def __post_init__(self) -> None:
        if self.resolution not in _SIZES:
            raise ValueError(f"resolution must be one of {sorted(_SIZES)}")
        if self.channels not in (1, 2) or self.seconds <= 0:
            raise ValueError("channels must be 1 or 2 and seconds positive")

    @property
    def label(self) -> str:
        return f"{self.seconds}s {self.resolution} {'mono' if self.channels == 1 else 'stereo'}"

    @property
    def file_stem(self) -> str:
        return f"{_GENERATOR}-{self.seconds}s-{self.resolution}-{self.channels}ch"


def _run(cmd: list[str]) -> None:
    subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *cmd], check=True)


def _video(seconds: int, resolution: str, cache: Path) -> Path:
    path = cache / f"{_GENERATOR}-video-{seconds}s-{resolution}.mp4"
    if not path.exists():
        tmp = path.with_suffix(".tmp.mp4")
        _run(["-f", "lavfi", "-i", f"testsrc=size={_SIZES[resolution]}:rate=25:duration={seconds}",
              "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-f", "mp4", str(tmp)])
        os.replace(tmp, path)
    return path


def _audio_graph(seconds: int, channels: int) -> str:
    def voice(i: int, tone: int) -> str:
        return (f"anoisesrc=color=pink:amplitude=0.25:sample_rate=44100:duration={seconds}:seed={i + 1}[n{i}];"
                f"sine=frequency={tone}:sample_rate=44100:duration={seconds}[s{i}];"
                f"[n{i}][s{i}]amix=inputs=2:duration=shortest[v{i}]")
    if channels == 1:
        return voice(0, 440) + ";[v0]anull[a]"
    return voice(0, 440) + ";" + voice(1, 554) + ";[v0][v1]join=inputs=2:channel_layout=stereo[a]"


def clip(spec: ClipSpec, cache: Path = CACHE_DIR) -> Path:
    """The clip for `spec`, generated on first use."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{spec.file_stem}.mp4"
    if path.exists():
        return path
    video = _video(spec.seconds, spec.resolution, cache)
    tmp = path.with_suffix(".tmp.mp4")
    bitrate = "96k" if spec.channels == 1 else "160k"
    _run(["-i", str(video), "-filter_complex", _audio_graph(spec.seconds, spec.channels),
          "-map", "0:v", "-map", "[a]", "-c:v", "copy", "-c:a", "aac", "-b:a", bitrate, "-shortest",
          "-f", "mp4", str(tmp)])
    os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class Probe:
    duration: float          # container duration, seconds
    audio: str               # ffmpeg's description of the first audio stream ("" when none)


def probe(path: Path) -> Probe:
    """Duration and first audio stream of a media file, via the pinned ffmpeg's input report."""
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                         capture_output=True, text=True).stderr
    match = _DURATION_RE.search(out)
    if match is None:
        raise ValueError(f"no duration in ffmpeg's report for {path.name}")
    h, m, s = match.groups()
    audio = next((line.strip() for line in out.splitlines() if "Audio:" in line), "")
    return Probe(int(h) * 3600 + int(m) * 60 + float(s), audio)
