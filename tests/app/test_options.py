"""Per-file options: metadata -> a closed set of values -> fixed ffmpeg tokens; anything else is a reason."""
from __future__ import annotations

import shlex
from datetime import timedelta

import pytest
from hypothesis import given, settings, strategies as st

from shared import options as opts
from shared.access import TaskStorageAccess
from shared.ffmpeg import command_line, encoder_tokens
from shared.options import ConversionOptions, OptionProblem, from_metadata
from shared.task_spec import TaskLimits, TaskRequest, build_task

SAS = TaskStorageAccess(input_url="https://acct.blob.core.windows.net/input/a.mp4?sig=x",
                        output_container_url="https://acct.blob.core.windows.net/output?sig=y",
                        logs_container_url="https://acct.blob.core.windows.net/logs?sig=z", identity_resource_id=None)


def test_no_metadata_is_the_apps_defaults_and_the_same_command_as_before():
    parsed = from_metadata({"owner": "team-a"})
    assert parsed == ConversionOptions()
    assert command_line(2, parsed) == command_line(2)
    assert "-q:a 2 -f mp3" in command_line(2)


@pytest.mark.parametrize("metadata, tokens", [
    ({"mp3_bitrate": "128k"}, "-b:a 128k"),
    ({"MP3_Bitrate": "64"}, "-b:a 64k"),                      # names are case-insensitive, "k" optional
    ({"mp3_quality": "0"}, "-q:a 0"),
    ({"mp3_channels": "1", "mp3_samplerate": "22050", "mp3_bitrate": "64k"}, "-b:a 64k -ac 1 -ar 22050"),
    ({"mp3_loudnorm": "TRUE"}, "-q:a 2 -af loudnorm=I=-16:TP=-1.5:LRA=11"),
    ({"mp3_loudnorm": "false"}, "-q:a 2"),
])
def test_valid_options_map_to_fixed_tokens(metadata, tokens):
    parsed = from_metadata(metadata)
    assert isinstance(parsed, ConversionOptions)
    assert encoder_tokens(2, parsed) == tokens
    assert f"libmp3lame {tokens} -f mp3 output.mp3" in command_line(2, parsed)


@pytest.mark.parametrize("metadata, key, allowed", [
    ({"mp3_bitrate": "999k"}, "mp3_bitrate", "32k, 40k, 48k"),
    ({"mp3_bitrate": "128k; rm -rf /"}, "mp3_bitrate", "320k"),
    ({"mp3_quality": "10"}, "mp3_quality", "0 (best) to 9"),
    ({"mp3_channels": "6"}, "mp3_channels", "1 (mono), 2 (stereo)"),
    ({"mp3_samplerate": "96000"}, "mp3_samplerate", "44100, 48000"),
    ({"mp3_loudnorm": "loud"}, "mp3_loudnorm", "true, false"),
    ({"mp3_bitrat": "128k"}, "mp3_bitrat", "mp3_bitrate, mp3_quality"),          # a typo is not ignored
    ({"mp3_bitrate": "128k", "mp3_quality": "2"}, "mp3_bitrate", "set one of them"),
    ({"mp3_bitrate": "320k", "mp3_samplerate": "22050"}, "mp3_bitrate", "at most 160k"),
])
def test_invalid_options_name_the_key_and_allowed_values(metadata, key, allowed):
    problem = from_metadata(metadata)
    assert isinstance(problem, OptionProblem)
    assert problem.key == key and key in problem.reason and allowed in problem.reason


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(opts.KEYS + ("mp3_x", "other")), st.text(max_size=30), max_size=5))
def test_no_metadata_text_reaches_the_command_line(metadata):
    parsed = from_metadata(metadata)
    if isinstance(parsed, OptionProblem):
        return
    line = command_line(5, parsed)
    argv = shlex.split(line)
    allowed = {"-b:a", "-q:a", "-ac", "-ar", "-af", f"loudnorm=I={opts.LOUDNESS_TARGET_LUFS}:TP=-1.5:LRA=11"} | {
        f"{k}k" for k in opts.BITRATES_K} | {str(n) for n in (*opts.QUALITIES, *opts.SAMPLE_RATES)}
    encoder = argv[2].split("libmp3lame ", 1)[1].split(" -f mp3", 1)[0].split()
    assert set(encoder) <= allowed, encoder


def test_out_of_set_values_never_reach_the_command_even_when_constructed_by_hand():
    for bad in (ConversionOptions(bitrate_k=100), ConversionOptions(quality=True), ConversionOptions(channels=3),
                ConversionOptions(sample_rate=44101)):
        with pytest.raises(ValueError):
            command_line(2, bad)


def test_options_are_recorded_on_the_mp3_and_round_trip_through_the_row_text():
    parsed = from_metadata({"mp3_bitrate": "96k", "mp3_channels": "1", "mp3_loudnorm": "true"})
    assert parsed.canonical() == "mp3_bitrate=96k,mp3_channels=1,mp3_loudnorm=true"
    assert opts.parse_canonical(parsed.canonical()) == parsed
    request = TaskRequest(task_id="a-x", input_container="input", input_name="a.mp4", input_etag='"0x1"',
                          output_name="a.mp3", options=parsed)
    task = build_task(request, SAS, TaskLimits(mp3_quality=2, max_retries=0, max_wall_clock=timedelta(minutes=5)))
    mp3 = task.as_dict()["outputFiles"][0]
    headers = {h["name"]: h["value"] for h in mp3["destination"]["container"]["uploadHeaders"]}
    assert headers["x-ms-meta-mp3_bitrate"] == "96k" and headers["x-ms-meta-mp3_channels"] == "1"
    assert headers["x-ms-meta-mp3_loudnorm"] == "true" and "x-ms-meta-mp3_quality" not in headers
    assert "-b:a 96k -ac 1 -af loudnorm" in task.command_line
