"""The pinned ffmpeg binary (imageio-ffmpeg wheel), exposed as `ffmpeg` on a PATH directory."""
from __future__ import annotations

import os
from pathlib import Path

import imageio_ffmpeg


def ffmpeg_exe() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


def bin_dir(root: Path) -> Path:
    """A directory holding an `ffmpeg` symlink to the pinned binary, for a task's PATH."""
    target = root / "bin"
    target.mkdir(parents=True, exist_ok=True)
    link = target / "ffmpeg"
    if not link.exists():
        tmp = target / f".ffmpeg.{os.getpid()}"
        tmp.symlink_to(ffmpeg_exe())
        os.replace(tmp, link)
    return target
