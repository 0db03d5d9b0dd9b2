"""Helpers for the app's integration tests (tests/integration/test_submit*.py): settings for the
local stack, a counting HTTP transport, blob/ledger/task probes. Never used by unit tests."""
from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from azure.core.pipeline.transport import RequestsTransport

from devstack.ffmpeg import ffmpeg_exe
from shared.settings import Settings
from tests.waiting import wait_for  # noqa: F401  (re-exported to the integration tests)

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def local_settings(connection_string: str, *, batch_url: str, batch_account: str, batch_key: str,
                   **overrides: str) -> Settings:
    """The sample settings pointed at this test's Azurite and Batch emulator."""
    values = {**SAMPLE, "MEDIA_STORAGE": connection_string, "BATCH_ACCOUNT_URL": batch_url,
              "BATCH_ACCOUNT_NAME": batch_account, "BATCH_ACCOUNT_KEY": batch_key, **overrides}
    return Settings.from_env(values)


@dataclass
class CountingTransport(RequestsTransport):
    """Counts every HTTP request the SDK clients send, by (service port, method, path shape)."""

    requests: list[tuple[str, str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def send(self, request, **kwargs):
        parts = urlsplit(request.url)
        with self._lock:
            self.requests.append((parts.netloc, request.method, parts.path))
        return super().send(request, **kwargs)

    def mark(self) -> int:
        with self._lock:
            return len(self.requests)

    def since(self, mark: int) -> list[tuple[str, str, str]]:
        with self._lock:
            return list(self.requests[mark:])

    @staticmethod
    def by_host(requests: list[tuple[str, str, str]]) -> Counter:
        return Counter(host for host, _, _ in requests)


_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+\.\d+)")


def probe(path: Path) -> tuple[float, str]:
    """(duration seconds, ffmpeg's audio stream description) of a media file, via the pinned ffmpeg."""
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                         capture_output=True, text=True).stderr
    match = _DURATION.search(out)
    if match is None:
        raise AssertionError(f"no duration in ffmpeg output: {out[-500:]}")
    h, m, s = match.groups()
    audio = next((line for line in out.splitlines() if "Audio:" in line), "")
    return int(h) * 3600 + int(m) * 60 + float(s), audio


def make_two_track_clip(path: Path, first_seconds: float, second_seconds: float) -> Path:
    """Video + a mono first audio track + a longer stereo second track: tells which one was used."""
    subprocess.run([
        ffmpeg_exe(), "-nostdin", "-y", "-loglevel", "error",
        "-f", "lavfi", "-i", f"testsrc=size=160x120:rate=10:duration={second_seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={first_seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=880:sample_rate=44100:duration={second_seconds}",
        "-map", "0", "-map", "1", "-map", "2", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-ac:a:0", "1", "-ac:a:1", "2", "-f", "mp4", str(path)], check=True)
    return path


