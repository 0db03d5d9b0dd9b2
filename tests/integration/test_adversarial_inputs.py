"""Inputs nobody planned for, end to end: upload -> trigger -> Batch emulator task (the real pinned ffmpeg)
-> MP3 + ledger row written by the timer's reconciler.

Every case lands in one of two outcomes (issue 4): an MP3 with the right duration, <= 2 channels and metadata
naming its source, or a `skipped` / `rejected` / `failed` ledger row whose Reason a person can act on. Never an
exception out of the trigger, never more tries than TASK_MAX_RETRIES allows, never a SAS in a log line or a row,
nothing executed from a name.

One stack per module (fixed two-node pool, so tasks run at once) and one batch run: every clip and name is
uploaded and triggered together, the tasks are awaited once, the reconciler runs, and the parametrized tests
read the results. Clips are ~1 s lavfi tones (the pinned ffmpeg), generated into the session clip directory.
"""
from __future__ import annotations

import base64
import logging
import re
import subprocess
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from azure.batch import BatchClient
from azure.batch import models as batch_models
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables import TableClient
from azure.storage.blob import BlobClient, BlobServiceClient

import function_app
from devstack import media
from devstack.ffmpeg import ffmpeg_exe
from shared import naming, pool_spec, runtime
from shared.runtime import Service, build_service
from shared.settings import Settings
from shared.sweep import SweepPosition
from shared.submit import Submitter
from shared.task_spec import OUTPUT_FILE, TaskLimits
from shared.runtime import build_timer_service
from shared.settings import TimerSettings
from shared.trigger import blob_version
from tests.app.stack import local_settings, unique, wait_for

pytestmark = pytest.mark.integration

TASK_TIMEOUT = 120.0
SAS_VALUE = re.compile(r"(?i)\bsig=(?!\*\*\*|REDACTED)[^&\s\"'<>]+")  # a signature that was not masked

# --- media -------------------------------------------------------------------------------------------

def _ff(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-nostdin", "-y", "-hide_banner", "-loglevel", "error", *args],
                   check=True, capture_output=True, timeout=60)


def _tone(seconds: float = 1.0, rate: int = 44100, freq: int = 440) -> list[str]:
    return ["-f", "lavfi", "-i", f"sine=frequency={freq}:sample_rate={rate}:duration={seconds}"]


_VIDEO = ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=1"]
_X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
_STEREO = ["-ac", "2"]


def _subtitles_and_data(path: Path) -> None:
    srt = path.with_suffix(".srt")
    srt.write_text("1\n00:00:00,000 --> 00:00:00,900\nhello\n")
    # -timecode adds a tmcd data track; the SRT becomes a mov_text subtitle track.
    _ff(*_VIDEO, *_tone(), "-i", str(srt), "-map", "0", "-map", "1", "-map", "2", *_X264, "-c:a", "aac",
        *_STEREO, "-c:s", "mov_text", "-timecode", "01:00:00:00", str(path))


def _cover_art(path: Path) -> None:
    png = path.with_suffix(".png")
    _ff("-f", "lavfi", "-i", "color=red:size=64x64", "-frames:v", "1", str(png))
    _ff(*_tone(), "-i", str(png), "-map", "0", "-map", "1", "-c:a", "aac", *_STEREO, "-c:v", "png",
        "-disposition:v:0", "attached_pic", str(path))


def _first_half_of(make: Callable[[Path], None]) -> Callable[[Path], None]:
    def truncated(path: Path) -> None:
        whole = path.with_name(path.stem + "-whole.mp4")
        make(whole)
        data = whole.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return truncated


def _fragmented(path: Path) -> None:
    _ff(*_VIDEO, *_tone(), *_X264, "-c:a", "aac", *_STEREO, "-movflags", "frag_keyframe+empty_moov", str(path))


def _faststart(path: Path) -> None:
    _ff(*_VIDEO, *_tone(), *_X264, "-c:a", "aac", *_STEREO, "-movflags", "+faststart", str(path))


def _moov_at_end(path: Path) -> None:
    _ff(*_VIDEO, *_tone(), *_X264, "-c:a", "aac", *_STEREO, str(path))


def _empty_audio_track(path: Path) -> None:
    """An audio track in the header with no packets: a fragmented MP4 (its moov lists every track up
    front) whose audio starts after the cut."""
    video = path.with_name(path.stem + "-video.mp4")
    audio = path.with_name(path.stem + "-audio.mp4")
    _ff(*_VIDEO, *_X264, str(video))
    _ff(*_tone(), "-c:a", "aac", str(audio))
    _ff("-i", str(video), "-itsoffset", "30", "-i", str(audio), "-map", "0:v", "-map", "1:a", "-c", "copy",
        "-t", "1", "-movflags", "frag_keyframe+empty_moov", str(path))


def _unknown_audio_codec(path: Path) -> None:
    """An AAC track relabelled as a codec nobody knows: sample entry 'zzzz' and an esds object type of 0xFE."""
    plain = path.with_name(path.stem + "-aac.mp4")
    _ff(*_tone(), "-c:a", "aac", str(plain))
    data = bytearray(plain.read_bytes())
    entry = data.find(b"mp4a")
    data[entry:entry + 4] = b"zzzz"
    config = data.find(b"\x04", data.find(b"esds") + 8)  # DecoderConfigDescriptor tag, then a varint length
    oti = config + 1
    while data[oti] & 0x80:
        oti += 1
    data[oti + 1] = 0xFE  # objectTypeIndication: 0x40 (AAC) -> unassigned
    path.write_bytes(bytes(data))


def _big(path: Path) -> None:
    """A 1 s clip padded to ~100 MB by a trailing `free` box (ignored by demuxers): exercises the
    transfer of a large input without the CPU cost of encoding one."""
    _faststart(path)
    pad = 100 * 1024 * 1024
    with path.open("ab") as f:
        f.write((pad + 8).to_bytes(4, "big") + b"free")
        f.truncate(f.tell() + pad)  # sparse on disk


@dataclass(frozen=True)
class MediaCase:
    make: Callable[[Path], None]
    state: str                       # the ledger state after the reconciler ran
    channels: str | None = None      # ffmpeg's word for the MP3's layout ("mono", "stereo")
    rate: int | None = None          # the MP3's sample rate
    duration: float = 1.0
    reason: str | None = None        # a fragment the failed row's Reason must contain


MEDIA: dict[str, MediaCase] = {
    "audio_only": MediaCase(lambda p: _ff(*_tone(), "-c:a", "aac", *_STEREO, str(p)), "succeeded", "stereo", 44100),
    "video_after_audio": MediaCase(lambda p: _ff(*_tone(), *_VIDEO, "-map", "0:a", "-map", "1:v", *_X264,
                                                 "-c:a", "aac", *_STEREO, str(p)), "succeeded", "stereo", 44100),
    "surround_5_1": MediaCase(lambda p: _ff(*_tone(), "-c:a", "aac", "-ac", "6", str(p)), "succeeded", "stereo", 44100),
    "surround_7_1": MediaCase(lambda p: _ff(*_tone(), "-c:a", "aac", "-ac", "8", str(p)), "succeeded", "stereo", 44100),
    "rate_96k": MediaCase(lambda p: _ff(*_tone(rate=96000), "-c:a", "aac", *_STEREO, str(p)), "succeeded", "stereo", 48000),
    "rate_8k": MediaCase(lambda p: _ff(*_tone(rate=8000), "-c:a", "aac", str(p)), "succeeded", "mono", 8000),
    "mono": MediaCase(lambda p: _ff(*_tone(), "-c:a", "aac", str(p)), "succeeded", "mono", 44100),
    "subtitles_and_data": MediaCase(_subtitles_and_data, "succeeded", "stereo", 44100),
    "cover_art": MediaCase(_cover_art, "succeeded", "stereo", 44100),
    "fragmented": MediaCase(_fragmented, "succeeded", "stereo", 44100),
    "faststart": MediaCase(_faststart, "succeeded", "stereo", 44100),
    "moov_at_end": MediaCase(_moov_at_end, "succeeded", "stereo", 44100),
    "mp3_in_mp4": MediaCase(lambda p: _ff(*_tone(), "-c:a", "libmp3lame", *_STEREO, str(p)), "succeeded", "stereo", 44100),
    "opus_in_mp4": MediaCase(lambda p: _ff(*_tone(rate=48000), "-c:a", "libopus", *_STEREO, str(p)),
                             "succeeded", "stereo", 48000),
    "alac_in_mp4": MediaCase(lambda p: _ff(*_tone(), "-c:a", "alac", *_STEREO, str(p)), "succeeded", "stereo", 44100),
    "flac_in_mp4": MediaCase(lambda p: _ff(*_tone(), "-c:a", "flac", *_STEREO, str(p)), "succeeded", "stereo", 44100),
    "clip_0_05s": MediaCase(lambda p: _ff(*_tone(seconds=0.05), "-c:a", "aac", *_STEREO, str(p)),
                            "succeeded", "stereo", 44100, duration=0.05),
    "mov_renamed": MediaCase(lambda p: _ff(*_VIDEO, *_tone(), *_X264, "-c:a", "aac", *_STEREO, "-f", "mov", str(p)),
                             "succeeded", "stereo", 44100),
    # Not MP4-family: refused by the task's demuxer whitelist (ffmpeg probes content, not names).
    "mkv_renamed": MediaCase(lambda p: _ff(*_VIDEO, *_tone(rate=48000), *_X264, "-c:a", "libopus", *_STEREO,
                                           "-f", "matroska", str(p)), "failed", reason="not an MP4-family file"),
    "big_100mb": MediaCase(_big, "succeeded", "stereo", 44100),
    "truncated_moov_at_end": MediaCase(_first_half_of(_moov_at_end), "failed", reason="not a readable MP4"),
    "truncated_faststart": MediaCase(_first_half_of(_faststart), "failed", reason="the input is truncated"),
    "truncated_fragmented": MediaCase(_first_half_of(_fragmented), "failed", reason="the input is truncated"),
    "truncated_mkv_renamed": MediaCase(_first_half_of(lambda p: _ff(*_VIDEO, *_tone(rate=48000), *_X264, "-c:a",
                                                                    "libopus", "-f", "matroska", str(p))),
                                       "failed", reason="not an MP4-family file"),
    "empty_audio_track": MediaCase(_empty_audio_track, "failed", reason="holds no audio"),
    "unknown_audio_codec": MediaCase(_unknown_audio_codec, "failed", reason="codec ffmpeg cannot decode"),
}

# --- names -------------------------------------------------------------------------------------------

NFC = unicodedata.normalize("NFC", "names/café.mp4")
NFD = unicodedata.normalize("NFD", "names/café.mp4")


@dataclass(frozen=True)
class NameCase:
    name: str
    state: str                  # ledger state after the reconciler ran
    output: str | None = None   # the MP3's blob name, when one is expected
    stored: str | None = None   # the name the service stores (and the trigger sees), if not `name`
    reason: str | None = None


NAMES: dict[str, NameCase] = {case_id: case for case_id, case in [
    ("upper_ext", NameCase("names/UPPER.MP4", "succeeded", "names/UPPER.mp3")),
    ("mixed_ext", NameCase("names/Mixed.Mp4", "succeeded", "names/Mixed.mp3")),
    ("txt_after_mp4", NameCase("names/clip.mp4.txt", "skipped", reason="not an .mp4")),
    ("only_ext", NameCase(".mp4", "skipped", reason="the name is only the extension")),
    ("folder_only_ext", NameCase("names/.mp4", "skipped", reason="the name is only the extension")),
    ("dots", NameCase("names/a.b.c.mp4", "succeeded", "names/a.b.c.mp3")),
    ("hash", NameCase("names/#1 take.mp4", "succeeded", "names/#1 take.mp3")),
    ("question", NameCase("names/why?.mp4", "succeeded", "names/why?.mp3")),
    ("percent", NameCase("names/100%.mp4", "succeeded", "names/100%.mp3")),
    ("percent20", NameCase("names/a%20b.mp4", "succeeded", "names/a%20b.mp3")),
    ("plus", NameCase("names/a+b.mp4", "succeeded", "names/a+b.mp3")),
    ("query_like", NameCase("names/x&y=1;z.mp4", "succeeded", "names/x&y=1;z.mp3")),
    ("leading_space", NameCase(" names/ lead.mp4", "succeeded", " names/ lead.mp3")),
    ("trailing_space", NameCase("names/trail.mp4 ", "skipped", reason="ends with spaces after '.mp4'")),
    ("trailing_dot_folder", NameCase("dir./x.mp4", "succeeded", "dir./x.mp3")),
    ("double_slash", NameCase("names/a//b.mp4", "rejected", reason="empty path segment")),
    ("backslash", NameCase("names/a\\b.mp4", "succeeded", "names/a/b.mp3", stored="names/a/b.mp4")),
    ("nfc", NameCase(NFC, "succeeded", NFC[:-4] + ".mp3")),
    ("nfd", NameCase(NFD, "succeeded", NFD[:-4] + ".mp3")),
    ("emoji", NameCase("names/🎵 song 🎶.mp4", "succeeded", "names/🎵 song 🎶.mp3")),
    ("cjk", NameCase("names/音楽/曲.mp4", "succeeded", "names/音楽/曲.mp3")),
    ("rtl", NameCase("names/מוזיקה/שיר عربي.mp4", "succeeded", "names/מוזיקה/שיר عربي.mp3")),
    ("control_char", NameCase("names/bell\x07.mp4", "rejected", reason="control")),
    ("tab", NameCase("names/tab\there.mp4", "rejected", reason="control")),
    ("shell", NameCase("names/$(touch pwned)`id`;|&.mp4", "succeeded", "names/$(touch pwned)`id`;|&.mp3")),
    # Azure counts a blob name's length in UTF-16 code units (an emoji is two): 1,024 is the limit.
    ("cjk_1024", NameCase("長" * 1020 + ".mp4", "succeeded", "長" * 1020 + ".mp3")),
    ("emoji_1024_units", NameCase("😀" * 510 + ".mp4", "succeeded", "😀" * 510 + ".mp3")),
    ("emoji_1026_units", NameCase("😀" * 511 + ".mp4", "rejected", reason="longer than 1024")),
    ("case_upper", NameCase("names/Case.mp4", "succeeded", "names/Case.mp3")),
    ("case_lower", NameCase("names/case.mp4", "succeeded", "names/case.mp3")),
]}

BURST_NAME = "burst/same name.mp4"
BURST_VERSIONS = 5

# --- the stack and the batch run ------------------------------------------------------------------------


@dataclass
class Run:
    settings: Settings
    service: Service
    batch: BatchClient
    blobs: BlobServiceClient
    table: TableClient
    connection_string: str
    emulator: Any
    clip_dir: Path
    row_keys: dict[str, str] = field(default_factory=dict)          # blob name -> ledger row key
    trigger_errors: dict[str, str] = field(default_factory=dict)    # blob name -> exception text
    burst: list[tuple[str, float]] = field(default_factory=list)    # (ETag, seconds) per burst version
    burst_ids: list[str] = field(default_factory=list)
    log_text: str = ""
    seconds: dict[str, float] = field(default_factory=dict)

    def upload(self, name: str, data: bytes) -> str:
        client = self.blobs.get_blob_client(self.settings.input_container, name)
        return client.upload_blob(data, overwrite=True)["etag"]

    def trigger(self, name: str) -> str | None:
        """What the host does: bind a BlobClient for the blob and call the function."""
        runtime.set_service(self.service)
        client = BlobClient.from_connection_string(self.connection_string, self.settings.input_container, name)
        try:
            function_app.process_upload(client)
        except Exception as exc:  # noqa: BLE001 - recorded: the test asserts there are none
            self.trigger_errors[name] = f"{type(exc).__name__}: {exc}"
            return None
        try:
            etag = client.get_blob_properties().etag
        except ResourceNotFoundError:
            etag = ""
        key = naming.task_id(name, etag)
        self.row_keys[name] = key
        return key

    def row(self, name: str) -> dict:
        return self.table.get_entity(self.settings.job_id, self.row_keys[name])

    def job_of(self, key: str) -> str:
        """The job the app addressed a task to: its row says (no row: the current period's)."""
        try:
            return self.table.get_entity(self.settings.job_id, key)["JobId"]
        except ResourceNotFoundError:
            now = datetime.now(timezone.utc)
            return self.service.batch.jobs.job_for(now, now)

    def live_jobs(self) -> list[str]:
        return [job.job_id for job in self.service.batch.our_jobs()]

    def output(self, name: str) -> BlobClient:
        return self.blobs.get_blob_client(self.settings.output_container, name)

    def mp3(self, name: str) -> tuple[float, str, dict]:
        """(duration, ffmpeg's audio stream line, metadata) of an MP3 in the output container."""
        out = self.output(name)
        path = self.clip_dir / f"out-{naming.task_id(name, 'x')}.mp3"
        path.write_bytes(out.download_blob().readall())
        duration, audio = probe(path)
        return duration, audio, out.get_blob_properties().metadata


_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+\.\d+)")


def probe(path: Path) -> tuple[float, str]:
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                         capture_output=True, text=True).stderr
    match = _DURATION.search(out)
    assert match, out[-500:]
    h, m, s = match.groups()
    return int(h) * 3600 + int(m) * 60 + float(s), next((ln for ln in out.splitlines() if "Audio:" in ln), "")


def _fixed_pool(settings: Settings, nodes: int) -> batch_models.BatchPoolCreateOptions:
    spec = pool_spec.build_pool(settings)
    return batch_models.BatchPoolCreateOptions(
        id=spec.id, vm_size=spec.vm_size, virtual_machine_configuration=spec.virtual_machine_configuration,
        task_slots_per_node=spec.task_slots_per_node, task_scheduling_policy=spec.task_scheduling_policy,
        start_task=spec.start_task, target_dedicated_nodes=nodes)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(f"{record.name} {record.getMessage()}")
        except Exception:  # noqa: BLE001 - a record that cannot format is not our concern here
            pass


@pytest.fixture(scope="module")
def run(storage_connection_string, batch_emulator_module, tmp_path_factory) -> Run:
    clip_dir = tmp_path_factory.mktemp("adversarial")
    settings = local_settings(
        storage_connection_string, batch_url=batch_emulator_module.url,
        batch_account=batch_emulator_module.account_name, batch_key=batch_emulator_module.account_key,
        INPUT_CONTAINER=unique("in-"), OUTPUT_CONTAINER=unique("out-"), LOGS_CONTAINER=unique("logs-"),
        LEDGER_TABLE=unique("ledger"), BATCH_POOL_ID=unique("pool-"), BATCH_JOB_ID=unique("job-"))
    batch = BatchClient(batch_emulator_module.url, AzureNamedKeyCredential(
        batch_emulator_module.account_name, batch_emulator_module.account_key))
    batch.create_pool(_fixed_pool(settings, 2))
    blobs = BlobServiceClient.from_connection_string(storage_connection_string)
    blobs.create_container(settings.input_container)
    service = build_service(settings)
    table = TableClient.from_connection_string(storage_connection_string, table_name=settings.ledger_table)
    r = Run(settings, service, batch, blobs, table, storage_connection_string, batch_emulator_module, clip_dir)

    capture = _Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        _execute(r)
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)
    r.log_text = "\n".join(capture.lines)
    yield r
    runtime.set_service(None)
    service.clients.batch.close()
    batch.close()


def _execute(r: Run) -> None:
    started = time.monotonic()
    clips = {case_id: _clip(r.clip_dir, case_id, case) for case_id, case in MEDIA.items()}
    stereo = media.make_clip(r.clip_dir / "names-stereo.mp4", seconds=1.0, size="160x120")
    r.seconds["generate"] = time.monotonic() - started

    mark = time.monotonic()
    for case_id, path in clips.items():
        r.upload(f"media/{case_id}.mp4", path.read_bytes())
        r.trigger(f"media/{case_id}.mp4")
    data = stereo.read_bytes()
    for case in NAMES.values():
        r.upload(case.name, data)
        r.trigger(case.stored or case.name)
    # A burst of re-uploads of one name, each version a different length, each triggered at once.
    for version in range(BURST_VERSIONS):
        seconds = 1.0 + 0.5 * version
        path = media.make_clip(r.clip_dir / f"burst-{version}.mp4", seconds=seconds, size="160x120", video=False)
        etag = r.upload(BURST_NAME, path.read_bytes())
        r.burst.append((etag, seconds))
        r.burst_ids.append(r.trigger(BURST_NAME) or "")
    r.seconds["upload+trigger"] = time.monotonic() - mark

    mark = time.monotonic()
    submitted = {k for k in [*r.row_keys.values(), *r.burst_ids] if k and _has_task(r, k)}
    for key in submitted:
        wait_for(lambda k=key: r.batch.get_task(r.job_of(k), k).state == "completed", TASK_TIMEOUT,
                 interval=0.25, what=f"task {key}")
    r.seconds["tasks"] = time.monotonic() - mark

    mark = time.monotonic()
    timer = build_timer_service(r.service, TimerSettings.from_env({}))
    result = timer.reconciler.run(r.live_jobs())
    assert result.complete, result.errors
    r.seconds["reconcile"] = time.monotonic() - mark


def _has_task(r: Run, key: str) -> bool:
    try:
        r.batch.get_task(r.job_of(key), key)
        return True
    except ResourceNotFoundError:
        return False


def _clip(clip_dir: Path, case_id: str, case: MediaCase) -> Path:
    path = clip_dir / f"{case_id}.mp4"
    if not path.exists():
        case.make(path)
    return path


@pytest.fixture(scope="module")
def long_clip(run) -> Path:
    """An hour of 8 kHz FLAC in MP4: ~1 s to make (FLAC encodes fast), several seconds of MP3 encoding."""
    return _clip(run.clip_dir, "long-hour", MediaCase(lambda p: _ff(*_tone(seconds=3600, rate=8000), "-c:a", "flac",
                                                                     str(p)), "succeeded"))


# --- media outcomes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("case_id", list(MEDIA))
def test_media_input_outcome(run, case_id):
    case, name = MEDIA[case_id], f"media/{case_id}.mp4"
    assert name not in run.trigger_errors
    row = run.row(name)
    assert row["State"] == case.state, (row.get("State"), row.get("Reason"))
    if case.state == "succeeded":
        duration, audio, metadata = run.mp3(f"media/{case_id}.mp3")
        assert abs(duration - case.duration) < 0.1, (duration, audio)
        assert f"{case.rate} Hz" in audio and f" {case.channels}," in audio, audio
        assert source_name(metadata) == name and metadata["batch_task_id"] == row["RowKey"]
        assert metadata["source_etag"] == row["InputEtag"]
        assert row["OutputUrl"].endswith(f"/media/{case_id}.mp3")
    else:
        assert case.reason and case.reason in row["Reason"], row["Reason"]
        task = run.batch.get_task(run.job_of(row["RowKey"]), row["RowKey"])
        assert task.execution_info.retry_count == run.settings.task_max_retries  # bounded, no storm
        with pytest.raises(ResourceNotFoundError):
            run.output(f"media/{case_id}.mp3").get_blob_properties()


# --- name outcomes -------------------------------------------------------------------------------------

@pytest.mark.parametrize("case_id", list(NAMES))
def test_name_outcome(run, case_id):
    case = NAMES[case_id]
    seen = case.stored or case.name
    assert seen not in run.trigger_errors
    row = run.row(seen)
    assert row["State"] == case.state, (row.get("State"), row.get("Reason"))
    if case.reason:
        assert case.reason in row["Reason"], row["Reason"]
    if case.output:
        _, audio, metadata = run.mp3(case.output)
        assert "stereo" in audio
        assert source_name(metadata) == seen
        assert metadata["batch_task_id"] == row["RowKey"] == row["TaskId"]
        assert row["OutputName"] == case.output
    else:
        assert "TaskId" not in row


def test_names_differing_only_by_normalization_or_case_are_separate_work(run):
    for a, b in ((NFC, NFD), ("names/Case.mp4", "names/case.mp4")):
        assert a != b and run.row_keys[a].lower() != run.row_keys[b].lower()
        assert run.output(a[:-4] + ".mp3").get_blob_properties().metadata["source_name"] != \
            run.output(b[:-4] + ".mp3").get_blob_properties().metadata["source_name"]


def test_burst_of_reuploads_is_one_task_and_one_row_per_version(run):
    etags = [etag for etag, _ in run.burst]
    assert len(set(etags)) == BURST_VERSIONS
    # Each trigger saw the blob's version at that moment: distinct ETags, distinct task ids, one row each.
    ids = [i for i in run.burst_ids if i]
    assert len(ids) == BURST_VERSIONS and len(set(ids)) == BURST_VERSIONS
    rows = [run.table.get_entity(run.settings.job_id, i) for i in ids]
    assert [r["InputEtag"] for r in rows] == etags and rows[-1]["State"] == "succeeded"
    # Older versions either finished or were superseded by a newer upload (never any other failure). Azurite
    # resets Creation-Time on a Put Blob overwrite, so locally none is detected as an overwrite (see below);
    # Azure keeps it, and there the older in-flight versions end superseded.
    for row in rows[:-1]:
        assert row["State"] == "succeeded" or "superseded" in row["Reason"], row
    _, _, metadata = run.mp3(BURST_NAME[:-4] + ".mp3")
    assert metadata["source_etag"] in etags


def test_reupload_while_the_previous_version_converts_leaves_the_latest_mp3(run, long_clip):
    """Same-name tasks write the same MP3: the trigger of an overwrite terminates the older version's task, so
    the latest upload's MP3 is the one left (a terminated task uploads nothing) and the ledger says why.

    The new version is committed with Put Block List (how SDKs and AzCopy upload large files): the trigger
    tells an overwrite by Creation-Time < Last-Modified, and Azurite keeps Creation-Time across a block-list
    commit, as Azure does, but resets it on a Put Blob overwrite."""
    name = "race/re-upload.mp4"
    old = long_clip
    new = _clip(run.clip_dir, "race-new", MediaCase(lambda p: _ff(*_tone(seconds=2), "-c:a", "aac", str(p)),
                                                    "succeeded"))
    created = time.monotonic()
    run.upload(name, old.read_bytes())
    old_id = run.trigger(name)
    # Past the download: ffmpeg has started writing the old version's MP3 (the task's files, via the Batch API).
    wait_for(lambda: _task_has_file(run, old_id, OUTPUT_FILE), 30, interval=0.05, what="old conversion under way")
    time.sleep(max(0.0, 1.1 - (time.monotonic() - created)))  # timestamps are whole seconds
    client = run.blobs.get_blob_client(run.settings.input_container, name)
    client.stage_block("b0", new.read_bytes())
    new_etag = client.commit_block_list(["b0"])["etag"]
    new_id = run.trigger(name)
    assert new_id and new_id != old_id
    ended = wait_for(lambda: (t := run.batch.get_task(run.job_of(old_id), old_id)).state == "completed" and t, 10,
                     what="old task terminated")
    assert ended.execution_info.failure_info.code == "TaskEnded", ended.execution_info
    done = wait_for(lambda: (t := run.batch.get_task(run.job_of(new_id), new_id)).state == "completed" and t, 30,
                    what="new task")
    assert done.execution_info.result == "success", done.execution_info
    duration, _, metadata = run.mp3("race/re-upload.mp3")
    assert metadata["source_etag"] == new_etag and abs(duration - 2.0) < 0.1, (duration, metadata)
    timer = build_timer_service(run.service, TimerSettings.from_env({}))
    assert timer.reconciler.run(run.live_jobs()).complete
    rows = {i: run.table.get_entity(run.settings.job_id, i) for i in (old_id, new_id)}
    assert rows[new_id]["State"] == "succeeded", rows[new_id]
    assert rows[old_id]["State"] == "failed" and "superseded by a newer upload" in rows[old_id]["Reason"], rows[old_id]


def test_a_sweep_over_every_odd_name_finds_nothing_missed(run):
    """The timer's missed-upload sweep lists the container (names as List Blobs returns them) and must map
    every blob version to the row the trigger wrote: no second task for any spelling.

    Names with control characters go first: Azure refuses them at upload (400), Azurite stores them but its
    List Blobs then answers 500 for the whole container (a local-only hazard; their rejected rows stay)."""
    for case in NAMES.values():
        if any(unicodedata.category(ch) == "Cc" for ch in case.name):
            run.blobs.get_blob_client(run.settings.input_container, case.name).delete_blob()
    timer = build_timer_service(run.service, TimerSettings.from_env({"SWEEP_MIN_AGE_SECONDS": "0"}))
    result = timer.sweeper.run(SweepPosition())
    assert result.pass_completed
    assert result.blobs_listed >= len(MEDIA) + len(NAMES)
    assert (result.missing, result.submitted) == (0, 0), result


# --- cross-cutting --------------------------------------------------------------------------------------

def test_no_trigger_raised(run):
    assert run.trigger_errors == {}


def test_no_sas_in_logs_or_ledger(run):
    assert "sig=" in run.log_text  # SAS URLs were logged (masked): the check below has something to bite on
    leaks = [line for line in run.log_text.splitlines() if SAS_VALUE.search(line)]
    assert leaks == []
    for row in run.table.query_entities(f"PartitionKey eq '{run.settings.job_id}'"):
        for key, value in row.items():
            assert not (isinstance(value, str) and SAS_VALUE.search(value)), (key, value)


def test_nothing_executed_from_a_name(run):
    assert run.emulator.data_dir is not None
    assert list(run.emulator.data_dir.rglob("pwned")) == []
    assert not (Path.cwd() / "pwned").exists()


def test_the_batch_run_is_quick(run):
    # Budget for this module: the whole file should stay well under ~90 s on two cores.
    print("phase seconds:", {k: round(v, 1) for k, v in run.seconds.items()})
    for name, key in run.row_keys.items():  # the outcome table (shown with -s)
        row = run.table.get_entity(run.settings.job_id, key)
        print(f"{naming.printable_name(name)[:60]!r:64} {row['State']:10} {row.get('Reason') or ''}")
    assert sum(run.seconds.values()) < 90, run.seconds


# --- wall clock -----------------------------------------------------------------------------------------

def test_long_input_stops_at_the_wall_clock_limit_and_is_recorded(run, long_clip):
    """TASK_MAX_WALL_CLOCK_MINUTES is whole minutes; the limit itself is the task's maxWallClockTime, so a
    Submitter with a 1 s limit (same gateway, ledger and access) shows the path in seconds, not minutes."""
    path = long_clip
    limits = TaskLimits(mp3_quality=run.settings.mp3_quality, max_retries=0, max_wall_clock=timedelta(seconds=1))
    submitter = Submitter(batch=run.service.batch, ledger=run.service.ledger, access=run.service.access,
                          jobs=run.service.batch.jobs, limits=limits)
    name = "long/an hour.mp4"
    etag = run.upload(name, path.read_bytes())
    version = blob_version(run.blobs.get_blob_client(run.settings.input_container, name))
    outcome = submitter.handle(version)
    assert outcome.state.value == "queued" and outcome.row_key == naming.task_id(name, etag)
    task = wait_for(lambda: (t := run.batch.get_task(run.job_of(outcome.row_key), outcome.row_key)).state == "completed" and t,
                    60, what="wall-clock task")
    assert task.execution_info.result == "failure" and task.execution_info.retry_count == 0
    timer = build_timer_service(run.service, TimerSettings.from_env({}))
    assert timer.reconciler.run(run.live_jobs()).complete
    row = run.table.get_entity(run.settings.job_id, outcome.row_key)
    assert row["State"] == "failed", row
    assert "maximum wall clock time" in row["Reason"], row["Reason"]
    with pytest.raises(ResourceNotFoundError):
        run.output("long/an hour.mp3").get_blob_properties()


def source_name(metadata: dict) -> str:
    """The input name an MP3's metadata names: percent-encoded, or base64 when that is too long."""
    if "source_name_b64" in metadata:
        return base64.b64decode(metadata["source_name_b64"]).decode("utf-8")
    return unquote(metadata["source_name"])


def _task_has_file(run: Run, task_id: str, file_name: str) -> bool:
    try:
        files = run.batch.list_task_files(run.job_of(task_id), task_id, recursive=True)
        return any(f.name.rsplit("/", 1)[-1] == file_name for f in files)
    except HttpResponseError:  # not on a node yet: TaskFilesUnavailable (409) or not found
        return False
