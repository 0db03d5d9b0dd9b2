"""Unplanned inputs at unit level: what the handler decides for odd names, the name-length rule as Azure
counts it, the task command run for real on broken clips, and the ledger reason for each failure.

The end-to-end run of the same inputs (Azurite + Batch emulator + reconciler) is
tests/integration/test_adversarial_inputs.py; these are the fast checks that fail first.
"""
from __future__ import annotations

import base64
import shlex
import subprocess
import unicodedata
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import unquote

import pytest

from shared.job_periods import JobPeriods
from devstack.ffmpeg import bin_dir, ffmpeg_exe
from shared import naming
from shared.ledger import State
from shared.ffmpeg import reason as ffmpeg_reason
from shared.submit import BlobVersion, Submitter
from shared.ffmpeg import INPUT_FILE, LOG_FILE, OUTPUT_FILE, command_line
from shared.task_spec import (TaskLimits, TaskRequest,
                               source_metadata_headers)

from .fakes import FakeAccess, FakeBatch, FakeLedger

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
ETAG = '"0x8DC0FFEE"'


@pytest.fixture
def submitter() -> tuple[Submitter, FakeBatch, FakeLedger]:
    gateway, ledger = FakeBatch(), FakeLedger()
    handler = Submitter(batch=gateway, ledger=ledger, access=FakeAccess(), jobs=JobPeriods("jobs", timedelta(hours=1)),
                        limits=TaskLimits(2, 1, timedelta(minutes=60)), clock=lambda: NOW)
    return handler, gateway, ledger


def handle(submitter: Submitter, name: str, etag: str = ETAG):
    return submitter.handle(BlobVersion(container="input", name=name, etag=etag, size=1000))


# --- what the handler decides -----------------------------------------------------------------------

@pytest.mark.parametrize("name,output", [
    ("x.MP4", "x.mp3"), ("x.Mp4", "x.mp3"), ("a.b.c.mp4", "a.b.c.mp3"), ("#1 take.mp4", "#1 take.mp3"),
    ("why?.mp4", "why?.mp3"), ("100%.mp4", "100%.mp3"), ("a%20b.mp4", "a%20b.mp3"), ("a+b.mp4", "a+b.mp3"),
    ("x&y=1;z.mp4", "x&y=1;z.mp3"), (" lead/ space.mp4", " lead/ space.mp3"), ("dir./x.mp4", "dir./x.mp3"),
    ("🎵 song.mp4", "🎵 song.mp3"), ("音楽/曲.mp4", "音楽/曲.mp3"), ("מוזיקה/שיר.mp4", "מוזיקה/שיר.mp3"),
    ("$(touch pwned)`id`;|&.mp4", "$(touch pwned)`id`;|&.mp3"),
])
def test_odd_but_valid_names_are_submitted_with_the_mapped_output(submitter, name, output):
    handler, gateway, ledger = submitter
    outcome = handle(handler, name)
    assert outcome.state is State.QUEUED
    task = gateway.tasks[outcome.row_key.lower()]
    assert task.output_files[0].destination.container.path == output
    assert name not in task.command_line and task.command_line == command_line(2)
    assert ledger.rows[("jobs", outcome.row_key)].input_name == name


@pytest.mark.parametrize("name,state,reason", [
    ("clip.mp4.txt", State.SKIPPED, "not an .mp4 file"),
    (".mp4", State.SKIPPED, "not an .mp4 file: the name is only the extension"),
    ("folder/.MP4", State.SKIPPED, "not an .mp4 file: the name is only the extension"),
    ("trail.mp4 ", State.SKIPPED, "not an .mp4 file: the name ends with spaces after '.mp4'"),
    ("dir.mp4/clip.mov", State.SKIPPED, "not an .mp4 file"),
    ("a//b.mp4", State.REJECTED, "empty path segment"),
    ("/lead.mp4", State.REJECTED, "empty path segment"),
    ("a/../b.mp4", State.REJECTED, "'..' path segment"),
    ("bell\x07.mp4", State.REJECTED, "control"),
    ("tab\there.mp4", State.REJECTED, "control"),
    ("nul\x00.mp4", State.REJECTED, "control"),
    ("del\x7f.mp4", State.REJECTED, "control"),
    ("c1\x85.mp4", State.REJECTED, "control"),
    ("😀" * 511 + ".mp4", State.REJECTED, "longer than 1024"),
])
def test_names_that_are_not_work_get_a_row_and_no_task(submitter, name, state, reason):
    handler, gateway, ledger = submitter
    outcome = handle(handler, name)
    assert outcome.state is state and reason in (outcome.reason or "")
    assert gateway.tasks == {}
    row = ledger.rows[("jobs", outcome.row_key)]
    assert row.state is state and row.task_id is None
    assert all(ch.isprintable() or ch == " " for ch in row.input_name)  # control characters escaped


# --- the length rule is the service's: UTF-16 code units ------------------------------------------------

@pytest.mark.parametrize("name,units,ok", [
    ("x" * 1020 + ".mp4", 1024, True),
    ("x" * 1021 + ".mp4", 1025, False),
    ("長" * 1020 + ".mp4", 1024, True),       # BMP: one unit each, 3 UTF-8 bytes each
    ("😀" * 510 + ".mp4", 1024, True),        # astral: two units each
    ("😀" * 511 + ".mp4", 1026, False),       # 515 code points, yet over Azure's limit
])
def test_blob_name_length_counts_utf16_code_units(name, units, ok):
    assert naming.utf16_length(name) == units == len(name.encode("utf-16-le")) // 2
    assert (naming.name_problem(name) is None) is ok


@pytest.mark.parametrize("name", ["長" * 1020 + ".mp4", "😀" * 510 + ".mp4", "a b/ü;x.MP4", "x" * 1020 + ".mp4",
                                  "%" * 1020 + ".mp4"])
def test_every_legal_name_is_named_in_the_mp3_metadata_within_8_kib(name):
    request = TaskRequest(task_id="t" * 64, input_container="c" * 63, input_name=name, input_etag='"0x8DC0FFEE"',
                          output_name=name[:-4] + ".mp3")
    meta = {h.name.removeprefix("x-ms-meta-"): h.value for h in source_metadata_headers(request)
            if h.name.startswith("x-ms-meta-")}
    assert sum(len(k) + len(v) for k, v in meta.items()) <= 8 * 1024      # Azure's metadata limit
    assert all(v.isascii() for v in meta.values())                          # header values
    named = (base64.b64decode(meta["source_name_b64"]).decode("utf-8") if "source_name_b64" in meta
             else unquote(meta["source_name"]))
    assert named == name


# --- separate inputs stay separate ---------------------------------------------------------------------

def test_nfc_and_nfd_spellings_are_two_inputs_with_two_tasks(submitter):
    handler, gateway, _ = submitter
    nfc, nfd = (unicodedata.normalize(form, "café/crème.mp4") for form in ("NFC", "NFD"))
    assert nfc != nfd
    a, b = handle(handler, nfc), handle(handler, nfd)
    assert a.row_key.lower() != b.row_key.lower() and len(gateway.tasks) == 2
    assert {naming.output_name(nfc), naming.output_name(nfd)} == {nfc[:-4] + ".mp3", nfd[:-4] + ".mp3"}


def test_case_only_differences_are_two_tasks_case_insensitively(submitter):
    handler, gateway, _ = submitter
    a, b = handle(handler, "A.mp4"), handle(handler, "a.mp4")
    assert a.row_key.lower() != b.row_key.lower() and len(gateway.tasks) == 2


def test_a_burst_of_versions_is_one_task_per_etag_and_repeats_are_free(submitter):
    handler, gateway, ledger = submitter
    etags = [f'"0x8DC00{i:02d}"' for i in range(5)]
    first = [handle(handler, "same.mp4", etag) for etag in etags]
    again = [handle(handler, "same.mp4", etag) for etag in etags]   # late duplicate triggers
    assert len({o.row_key for o in first}) == 5 and len(gateway.tasks) == 5
    assert [o.row_key for o in again] == [o.row_key for o in first]
    assert not any(o.ledger_written for o in again) and len(ledger.rows) == 5


# --- the task command, run for real on broken clips ----------------------------------------------------

def _ff(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-nostdin", "-y", "-hide_banner", "-loglevel", "error", *args],
                   check=True, capture_output=True, timeout=60)


_TONE = ["-f", "lavfi", "-i", "sine=frequency=440:duration=1"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("adversarial-cmd")
    made = {name: d / f"{name}.mp4" for name in ("good", "faststart", "mkv", "fragmented_empty_audio")}
    _ff(*_TONE, "-c:a", "aac", "-ac", "2", str(made["good"]))
    _ff(*_TONE, "-c:a", "aac", "-movflags", "+faststart", str(made["faststart"]))
    _ff(*_TONE, "-c:a", "libopus", "-f", "matroska", str(made["mkv"]))
    video, audio = d / "v.mp4", d / "a.mp4"
    _ff("-f", "lavfi", "-i", "testsrc=size=64x48:rate=5:duration=1", "-c:v", "libx264", "-preset", "ultrafast",
        "-pix_fmt", "yuv420p", str(video))
    _ff(*_TONE, "-c:a", "aac", str(audio))
    # The audio track is declared in the fragmented header but its packets start after the 1 s cut.
    _ff("-i", str(video), "-itsoffset", "30", "-i", str(audio), "-map", "0:v", "-map", "1:a", "-c", "copy",
        "-t", "1", "-movflags", "frag_keyframe+empty_moov", str(made["fragmented_empty_audio"]))
    for name in ("faststart", "mkv"):
        data = made[name].read_bytes()
        made[f"{name}_half"] = d / f"{name}_half.mp4"
        made[f"{name}_half"].write_bytes(data[: len(data) // 2])
    return made


def run_task_command(source: Path, work: Path) -> tuple[int, str, bool]:
    """The command as a node runs it: argv split like the agent does, cwd = a fresh working dir holding
    only input.mp4, the pinned ffmpeg first on PATH via AZ_BATCH_NODE_SHARED_DIR/bin."""
    work.mkdir(parents=True)
    (work / INPUT_FILE).write_bytes(source.read_bytes())
    shared = work.parent / "shared"
    bin_dir(shared)
    env = {"PATH": "/usr/bin:/bin", "AZ_BATCH_NODE_SHARED_DIR": str(shared)}
    done = subprocess.run(shlex.split(command_line(2)), cwd=work, env=env, capture_output=True, timeout=60)
    return done.returncode, (work / LOG_FILE).read_text(errors="replace"), (work / OUTPUT_FILE).exists()


DASH_MANIFEST = """<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011" type="static"
 mediaPresentationDuration="PT1S" minBufferTime="PT1S"><Period><AdaptationSet mimeType="audio/mp4">
<Representation id="a" bandwidth="1000" codecs="mp4a.40.2"><BaseURL>../private.mp4</BaseURL></Representation>
</AdaptationSet></Period></MPD>
"""


def test_a_dash_manifest_named_mp4_cannot_make_ffmpeg_open_other_files(clips, tmp_path):
    """A manifest uploaded as .mp4 reaches ffmpeg's DASH demuxer (it probes content, not names), which opens
    the files the manifest names on the node. The task's command refuses any demuxer but MP4's."""
    manifest = tmp_path / "manifest.mp4"
    manifest.write_text(DASH_MANIFEST)
    work = tmp_path / "w"
    (tmp_path / "private.mp4").write_bytes(clips["good"].read_bytes())  # another file on the node
    code, log, produced = run_task_command(manifest, work)
    assert code != 0 and not produced
    assert ffmpeg_reason(log).startswith("the input is not an MP4-family file"), log
    # Without the whitelists the same input converts the other file: what the flags prevent.
    alone = subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-i", INPUT_FILE, "-map", "0:a:0",
                            "-f", "mp3", "leak.mp3"], cwd=work, capture_output=True, timeout=60)
    assert alone.returncode == 0 and (work / "leak.mp3").stat().st_size > 0


def test_a_good_clip_converts_and_exits_zero(clips, tmp_path):
    code, log, produced = run_task_command(clips["good"], tmp_path / "w")
    assert (code, log, produced) == (0, "", True)


@pytest.mark.parametrize("clip,plain", [
    ("faststart_half", "the input is truncated"),          # ffmpeg alone: exit 0, an MP3 of the first part
    ("mkv_half", "the input is not an MP4-family file"),  # ditto in Matroska; refused before that by the demuxer whitelist
    ("fragmented_empty_audio", "the input's audio track holds no audio"),  # ffmpeg alone: exit 0, an MP3 with no frames
])
def test_inputs_ffmpeg_would_half_convert_fail_the_task_with_a_plain_reason(clips, tmp_path, clip, plain):
    code, log, _ = run_task_command(clips[clip], tmp_path / "w")
    assert code != 0, log
    reason = ffmpeg_reason(log)
    assert reason is not None and reason.startswith(plain), reason
    # Without the guard, ffmpeg alone accepts the same input: the guard is what fails it.
    alone = subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(clips[clip]), "-map", "0:a:0",
                            "-c:a", "libmp3lame", "-f", "mp3", str(tmp_path / "alone.mp3")], capture_output=True)
    assert alone.returncode == 0


# --- the ledger reason picks the cause, not the noise ------------------------------------------------

TRUNCATED_WITH_VIDEO_NOISE = """[h264 @ 0x558479702a80] Invalid NAL unit size (650 > 470).
[h264 @ 0x558479702a80] missing picture in access unit with size 474
[in#0/mov,mp4,m4a,3gp,3g2,mj2 @ 0x558479701280] stream 0, offset 0x2a24: partial file
[aist#0:0/aac @ 0x5644f3dad000] [dec:aac @ 0x5644f3dae4c0] Error submitting packet to decoder: Invalid data found when processing input
"""


@pytest.mark.parametrize("log,expected", [
    (TRUNCATED_WITH_VIDEO_NOISE,
     "the input is truncated: it ends before the audio its index lists (incomplete upload or copy) "
     "(ffmpeg: stream 0, offset 0x2a24: partial file)"),
    ("[in#0/matroska,webm @ 0x55cd8f4f2280] File ended prematurely\n",
     "the input is truncated: it ends before the audio its index lists (incomplete upload or copy) "
     "(ffmpeg: File ended prematurely)"),
    ("[aost#0:0/libmp3lame @ 0x55b3422b0a80] Empty output stream\n",
     "the input's audio track holds no audio (no packets) (ffmpeg: Empty output stream)"),
    ("[aist#0:0/aac @ 0x1] [dec:aac @ 0x2] Error submitting packet to decoder: Invalid data found when "
     "processing input\n",
     "the input is not a readable MP4 (corrupt or truncated upload) (ffmpeg: Error submitting packet to decoder: "
     "Invalid data found when processing input)"),
    ("[aist#0:0/none @ 0x5596ceb74f00] Decoding requested, but no decoder found for: none\n"
     "Error opening output file output.mp3.\nError opening output files: Invalid argument\n",
     "the input's audio is in a codec ffmpeg cannot decode (unknown or unsupported audio format) "
     "(ffmpeg: Decoding requested, but no decoder found for: none)"),
])
def test_failure_reason_names_the_cause(log, expected):
    assert ffmpeg_reason(log) == expected
