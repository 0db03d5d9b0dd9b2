"""bench/cpu_per_file.py measures the task's real command on a real clip (seconds of work, no stack)."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench.cpu_per_file import measure
from devstack.media import make_clip


def test_measures_cpu_per_audio_second_of_the_task_command(tmp_path: Path):
    clip = make_clip(tmp_path / "in" / "clip.mp4", seconds=3.0, channels=2)
    row = measure("t", clip, repetitions=1, quality=2, work_root=tmp_path / "work")
    assert row.audio_seconds == pytest.approx(3.0, abs=0.1)
    assert row.cpu_s > 0 and row.decode_cpu_s > 0
    assert row.mp3_bytes and row.mp3_bytes > 0           # our command wrote an MP3 of the whole clip
    data = row.to_json()
    assert data["cpu_s_per_audio_s"] == pytest.approx(row.cpu_s / row.audio_seconds, rel=1e-3)
    assert data["realtime_factor_one_core"] == pytest.approx(row.audio_seconds / row.cpu_s, rel=1e-2)


def test_a_clip_the_task_would_fail_is_not_measured(tmp_path: Path):
    silent = make_clip(tmp_path / "in" / "video-only.mp4", seconds=1.0, audio_streams=0)
    with pytest.raises(RuntimeError, match="failed"):
        measure("t", silent, repetitions=1, quality=2, work_root=tmp_path / "work")
