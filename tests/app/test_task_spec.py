"""The Batch task: constant command line, fixed local file names, mapped output, metadata, limits."""
from __future__ import annotations

import shlex
from datetime import timedelta

import pytest

from shared.access import TaskStorageAccess
from shared.ffmpeg import command_line
from shared.task_spec import TaskLimits, TaskRequest, build_task

HOSTILE = ["$(touch pwned).mp4", "a b/ü;rm -rf.mp4", "'\"`.mp4", "x" * 1020 + ".mp4", "a/b/clip.MP4"]
SAS = TaskStorageAccess("http://st/input/x?sv=1&sig=in", "http://st/output?sig=out", "http://st/logs?sig=logs", None)
LIMITS = TaskLimits(mp3_quality=4, max_retries=2, max_wall_clock=timedelta(minutes=30))


def request(name: str) -> TaskRequest:
    return TaskRequest(task_id="clip-abc", input_container="input", input_name=name, input_etag='"0x8D1"',
                       output_name=name[:-4] + ".mp3")


@pytest.mark.parametrize("name", HOSTILE)
def test_command_line_is_constant_whatever_the_name(name):
    task = build_task(request(name), SAS, LIMITS).as_dict()
    assert task["commandLine"] == command_line(4)
    assert name not in task["commandLine"] and name[:-4] not in task["commandLine"]


def test_command_is_audio_only_first_stream_no_stdin():
    argv = shlex.split(command_line(2))
    assert argv[:2] == ["/bin/sh", "-c"] and len(argv) == 3
    script = shlex.split(argv[2])
    ffmpeg = script[script.index("ffmpeg"):]
    for flag in ("-nostdin", "-vn", "-sn", "-dn"):
        assert flag in ffmpeg
    assert ffmpeg[ffmpeg.index("-i") + 1] == "input.mp4"
    assert ffmpeg[ffmpeg.index("-map") + 1] == "0:a:0"
    assert ffmpeg[ffmpeg.index("-c:a") + 1] == "libmp3lame"
    assert ffmpeg[ffmpeg.index("-q:a") + 1] == "2"
    redirect = ffmpeg.index("2>")
    assert ffmpeg[redirect - 1:redirect + 2] == ["output.mp3", "2>", "ffmpeg.log"]
    # Then only the truncation check on ffmpeg's own log (tests/app/test_adversarial_names.py).
    assert ffmpeg[redirect + 2:redirect + 6] == ["&&", "!", "grep", "-q"] and ffmpeg[-1] == "ffmpeg.log"


@pytest.mark.parametrize("bad", [-1, 10, "2; rm -rf /", 2.5])
def test_quality_must_be_a_small_integer(bad):
    with pytest.raises(ValueError):
        command_line(bad)


def test_files_limits_and_metadata():
    task = build_task(request("a b/ü;x.MP4"), SAS, LIMITS).as_dict()
    assert task["resourceFiles"] == [{"httpUrl": SAS.input_url, "filePath": "input.mp4"}]
    outputs = {o["filePattern"]: o for o in task["outputFiles"]}
    mp3 = outputs["output.mp3"]
    assert mp3["uploadOptions"]["uploadCondition"] == "tasksuccess"
    assert mp3["destination"]["container"]["containerUrl"] == SAS.output_container_url
    assert mp3["destination"]["container"]["path"] == "a b/ü;x.mp3"
    headers = {h["name"]: h["value"] for h in mp3["destination"]["container"]["uploadHeaders"]}
    assert headers == {
        "x-ms-blob-content-type": "audio/mpeg",
        "x-ms-meta-source_name": "a%20b/%C3%BC%3Bx.MP4",
        "x-ms-meta-source_container": "input",
        "x-ms-meta-source_etag": '"0x8D1"',
        "x-ms-meta-batch_task_id": "clip-abc",
        "x-ms-meta-mp3_quality": "4",          # the options used: here the app's default (LIMITS)
        "x-ms-meta-mp3_loudnorm": "false",
    }
    assert all(v.isascii() for v in headers.values())
    for pattern, blob in (("ffmpeg.log", "clip-abc/ffmpeg.log"), ("../stderr.txt", "clip-abc/stderr.txt")):
        assert outputs[pattern]["uploadOptions"]["uploadCondition"] == "taskfailure"
        assert outputs[pattern]["destination"]["container"] == {"containerUrl": SAS.logs_container_url, "path": blob}
    assert task["constraints"]["maxTaskRetryCount"] == 2
    assert build_task(request("x.mp4"), SAS, LIMITS).constraints.max_wall_clock_time == timedelta(minutes=30)


def test_pool_identity_replaces_sas():
    access = TaskStorageAccess("http://st/input/x", "http://st/output", "http://st/logs", "/subscriptions/s/uami")
    task = build_task(request("x.mp4"), access, LIMITS).as_dict()
    assert task["resourceFiles"][0]["identityReference"] == {"resourceId": "/subscriptions/s/uami"}
    for output in task["outputFiles"]:
        assert output["destination"]["container"]["identityReference"] == {"resourceId": "/subscriptions/s/uami"}


def test_very_long_unicode_name_keeps_metadata_under_the_limit():
    name = "ü" * 1020 + ".mp4"   # 6 KB percent-encoded: more than blob metadata may hold
    mp3 = build_task(request(name), SAS, LIMITS).as_dict()["outputFiles"][0]
    headers = {h["name"]: h["value"] for h in mp3["destination"]["container"]["uploadHeaders"]}
    assert "x-ms-meta-source_name" not in headers
    assert headers["x-ms-meta-batch_task_id"] == "clip-abc"  # the ledger row carries the full name
    assert sum(len(k) + len(v) for k, v in headers.items()) < 8192


def test_the_node_drops_the_task_files_a_minute_after_the_task_ends():
    constraints = build_task(request("a.mp4"), SAS, LIMITS).as_dict()["constraints"]
    assert constraints["retentionTime"] == "PT01M00S"  # not Batch's default 7 days of media on the node


def test_ffmpeg_runs_as_a_task_scoped_non_admin_user():
    identity = build_task(request("a.mp4"), SAS, LIMITS).as_dict()["userIdentity"]
    assert identity == {"autoUser": {"scope": "task", "elevationLevel": "nonadmin"}}
