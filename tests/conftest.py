"""Shared fixtures: a real Azurite per test session on free ports, the pinned ffmpeg, generated clips."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devstack import azurite, ffmpeg, media  # noqa: E402

pytest_plugins = ["tests.fixtures.batch_emulator"]


@pytest.fixture(scope="session")
def azurite_ports(tmp_path_factory) -> azurite.AzuritePorts:
    ports = azurite.free_ports()
    log = tmp_path_factory.mktemp("azurite") / "azurite.log"
    proc = azurite.start(ports, log_path=log)
    yield ports
    azurite.stop(proc)


@pytest.fixture(scope="session")
def storage_connection_string(azurite_ports) -> str:
    return azurite_ports.connection_string


@pytest.fixture(scope="session")
def ffmpeg_bin(tmp_path_factory) -> Path:
    return ffmpeg.bin_dir(tmp_path_factory.mktemp("ffmpeg"))


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def stereo_clip(clip_dir) -> Path:
    return media.make_clip(clip_dir / "stereo.mp4")


@pytest.fixture(scope="session")
def silent_clip(clip_dir) -> Path:
    return media.make_clip(clip_dir / "silent.mp4", audio_streams=0)
