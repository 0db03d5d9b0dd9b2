"""Completion events and per-file options on real Azurite + the Batch emulator (real ffmpeg).

Each upload's terminal outcome gives exactly one CloudEvents message of its type on the events queue, only once
its row is final; a deleted queue delays events but loses none; a re-sent event keeps its id. Options are read
back from the MP3 ffmpeg wrote (stream parameters and EBU R128 loudness measured by the pinned ffmpeg itself -
the same libavformat probe ffprobe prints; the wheel ships no ffprobe binary)."""
from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from devstack import media
from devstack.ffmpeg import ffmpeg_exe
from shared import handlers, naming, runtime
from shared.ledger import OUTBOX_PREFIX, Col
from shared.runtime import Service, build_publisher, build_service, build_timer_service
from shared.settings import Settings, TimerSettings
from shared.tick import TimerService
from ops import producer_cli
from tests.app.stack import SAMPLE, local_settings, probe, unique

pytestmark = pytest.mark.integration

FAST = TimerSettings.from_env({"IDLE_GRACE_SECONDS": "1", "AUTOSCALE_HANDBACK_SECONDS": "1",
                               "RECONCILE_OVERLAP_SECONDS": "5", "SWEEP_INTERVAL_SECONDS": "86400",
                               "SWEEP_MIN_AGE_SECONDS": "0"})
TYPES = {f"mp4tomp3.conversion.{o}" for o in ("succeeded", "failed", "rejected", "skipped")}


@dataclass
class EventStack:
    settings: Settings
    service: Service
    timer: TimerService
    blobs: BlobServiceClient
    table: TableClient
    queue: QueueClient
    values: dict

    def upload(self, name: str, data: bytes, metadata: dict | None = None) -> str:
        """Upload and run the trigger as the host would; the row key (task id)."""
        client = self.blobs.get_blob_client(self.settings.input_container, name)
        etag = client.upload_blob(data, overwrite=True, metadata=metadata)["etag"]
        runtime.set_service(self.service)
        handlers.on_blob(client)
        return naming.task_id(name, etag)

    def row(self, key: str) -> dict:
        return self.table.get_entity(self.settings.job_id, key)

    def markers(self) -> list[dict]:
        return list(self.table.query_entities("PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi", parameters={
            "pk": self.settings.job_id, "lo": OUTBOX_PREFIX, "hi": "~event."}))

    def tick_until(self, predicate, timeout: float = 90.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while True:
            report = self.timer.tick()
            if predicate():
                return report
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; last tick errors {report.errors}")
            time.sleep(0.3)

    def drain(self) -> list[dict]:
        """Every event on the queue, removed from it (as a consumer reads them)."""
        events = []
        while True:
            batch = list(self.queue.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=30))
            if not batch:
                return events
            for message in batch:
                events.append(json.loads(message.content))
                self.queue.delete_message(message)


@pytest.fixture
def stack(storage_connection_string, batch_emulator_factory) -> EventStack:
    emulator = batch_emulator_factory(enable_autoscale_min_gap=timedelta(seconds=1), node_start_delay=0.3)
    values = dict(
        MEDIA_STORAGE=storage_connection_string, BATCH_ACCOUNT_URL=emulator.url,
        BATCH_ACCOUNT_NAME=emulator.account_name, BATCH_ACCOUNT_KEY=emulator.account_key,
        INPUT_CONTAINER=unique("in-"), OUTPUT_CONTAINER=unique("out-"),
        LOGS_CONTAINER=unique("logs-"), LEDGER_TABLE=unique("ledger"), BATCH_POOL_ID=unique("pool-"),
        BATCH_JOB_ID=unique("job-"), POOL_MAX_NODES="2", POOL_TASK_SLOTS_PER_NODE="2",
        EVENTS_SINK="queue", EVENTS_QUEUE=unique("events-"), EVENTS_SOURCE="/mp4tomp3/test")
    settings = local_settings(storage_connection_string, batch_url=emulator.url, batch_account=emulator.account_name,
                              batch_key=emulator.account_key, **values)
    blobs = BlobServiceClient.from_connection_string(storage_connection_string)
    blobs.create_container(settings.input_container)
    service = build_service(settings)
    timer = build_timer_service(service, FAST, sleep=lambda s: time.sleep(min(s, 0.2)))
    table = TableClient.from_connection_string(storage_connection_string, table_name=settings.ledger_table)
    queue = QueueClient.from_connection_string(storage_connection_string, settings.events.queue)
    yield EventStack(settings, service, timer, blobs, table, queue, {**SAMPLE, **values})
    runtime.set_service(None)


def _final(stack: EventStack, *keys: str):
    return lambda: all(stack.row(k)[Col.STATE] in ("succeeded", "failed", "rejected", "skipped") for k in keys) \
        and not stack.markers()


def test_each_outcome_gives_exactly_one_event_of_its_type_with_its_fields(stack, clip_dir, stereo_clip, silent_clip):
    good = stack.upload("shows/good.mp4", stereo_clip.read_bytes())
    rejected = stack.upload("bad option.mp4", stereo_clip.read_bytes(), metadata={"mp3_bitrate": "999k"})
    skipped = stack.upload("notes.txt", b"not a video")
    # Before any tick: the two rows final at upload are published; the queued ones have no event yet.
    early = build_publisher(stack.service).run()
    assert early.published == 2
    first = stack.drain()
    assert {e["type"] for e in first} == {"mp4tomp3.conversion.rejected", "mp4tomp3.conversion.skipped"}
    failed = stack.upload("no audio.mp4", silent_clip.read_bytes())
    stack.tick_until(_final(stack, good, rejected, skipped, failed), what="four final rows, outbox empty")
    events = first + stack.drain()

    by_type = {}
    for e in events:
        by_type.setdefault(e["type"], []).append(e)
    assert set(by_type) == TYPES and all(len(v) == 1 for v in by_type.values()), [e["type"] for e in events]
    for e in events:
        assert e["specversion"] == "1.0" and e["source"] == "/mp4tomp3/test"
        assert e["datacontenttype"] == "application/json" and e["time"]
        data = e["data"]
        assert e["subject"] == f"/containers/{stack.settings.input_container}/blobs/{data['input']['name']}"
        assert e["id"] == f"{naming.task_id(data['input']['name'], data['input']['etag'])}.{data['outcome']}"
        assert e["type"] == f"mp4tomp3.conversion.{data['outcome']}"

    ok = by_type["mp4tomp3.conversion.succeeded"][0]["data"]
    mp3 = stack.blobs.get_blob_client(stack.settings.output_container, "shows/good.mp3").get_blob_properties()
    assert ok["input"]["container"] == stack.settings.input_container and ok["input"]["name"] == "shows/good.mp4"
    assert naming.normalize_etag(ok["input"]["etag"]) == naming.normalize_etag(stack.row(good)[Col.INPUT_ETAG])
    assert ok["output"] == {"container": stack.settings.output_container, "name": "shows/good.mp3",
                            "url": stack.row(good)[Col.OUTPUT_URL], "size": mp3.size}
    assert "sig=" not in ok["output"]["url"]
    assert ok["options"] == {"mp3_quality": "2", "mp3_loudnorm": "false"} and ok["reason"] is None
    assert ok["taskId"] == good and ok["durationSeconds"] is not None
    assert ok["timings"]["submittedAt"] and ok["timings"]["startedAt"] and ok["timings"]["endedAt"]

    bad = by_type["mp4tomp3.conversion.failed"][0]["data"]
    assert "no audio stream" in bad["reason"] and bad["output"] is None and bad["taskId"] == failed
    rej = by_type["mp4tomp3.conversion.rejected"][0]["data"]
    assert "mp3_bitrate" in rej["reason"] and "32k" in rej["reason"] and "320k" in rej["reason"]
    assert rej["taskId"] is None
    assert by_type["mp4tomp3.conversion.skipped"][0]["data"]["reason"] == "not an .mp4 file"

    # The rows record what was published; the outbox is empty; a later tick publishes nothing more.
    for key, e in ((good, ok), (failed, bad)):
        row = stack.row(key)
        assert row[Col.EVENT_ID] == f"{key}.{e['outcome']}" and row[Col.EVENT_SINKS] == "queue"
        assert row[Col.EVENT_PUBLISHED_AT] is not None
    stack.timer.tick()
    assert stack.drain() == [] and stack.markers() == []


def test_a_deleted_queue_delays_events_but_loses_none(stack, stereo_clip):
    warm = stack.upload("warm.txt", b"x")             # the publisher makes the queue once, then relies on it
    stack.tick_until(lambda: not stack.markers(), what="first event published")
    stack.drain()
    stack.queue.delete_queue()
    key = stack.upload("during outage.mp4", stereo_clip.read_bytes())
    report = stack.tick_until(lambda: stack.row(key)[Col.STATE] == "succeeded", what="conversion during outage")
    report = stack.timer.tick()
    assert any(e.startswith("events:") for e in report.errors), report.errors
    assert [m["RowKey"] for m in stack.markers()] == [OUTBOX_PREFIX + key]     # still owed
    assert Col.EVENT_ID not in stack.row(key)

    deadline = time.monotonic() + 60
    while True:   # a deleted queue's name may be refused for a while (QueueBeingDeleted)
        try:
            stack.queue.create_queue()
            break
        except ResourceExistsError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    stack.tick_until(lambda: not stack.markers(), what="the owed event published")
    events = stack.drain()
    assert [e["id"] for e in events] == [f"{key}.succeeded"]
    assert stack.row(key)[Col.EVENT_ID] == f"{key}.succeeded" and warm


def test_an_event_sent_again_keeps_its_id(stack, stereo_clip, monkeypatch):
    """At least once: when the row cannot be marked published after a send, the next tick sends again - with the
    same id, so the consumer drops the second copy."""
    ledger = stack.service.ledger
    real = ledger.settle_event
    calls = []

    def settle_fails_once(marker, columns):
        calls.append(marker.entity["RowKey"])
        return False if len(calls) == 1 else real(marker, columns)

    monkeypatch.setattr(ledger, "settle_event", settle_fails_once)
    key = stack.upload("twice.txt", b"x")
    stack.tick_until(lambda: not stack.markers(), what="published after one failed settle")
    events = stack.drain()
    assert len(events) == 2 and {e["id"] for e in events} == {f"{key}.skipped"}
    assert len({e["id"] for e in events}) == 1 and events[0] == events[1]


_LOUDNESS = re.compile(r"I:\s+(-?\d+(?:\.\d+)?) LUFS")


def integrated_loudness(path: Path) -> float:
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-af", "ebur128", "-f", "null",
                          "-"], capture_output=True, text=True).stderr
    return float(_LOUDNESS.findall(out)[-1])


def quiet_clip(path: Path, seconds: int = 12) -> Path:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"sine=frequency=440:sample_rate=44100:duration={seconds}", "-af", "volume=-35dB",
                    "-c:a", "aac", "-f", "mp4", str(path)], check=True)
    return path


def test_per_file_options_are_what_the_mp3_holds(stack, clip_dir, stereo_clip, tmp_path):
    quiet = quiet_clip(tmp_path / "quiet.mp4")
    cbr = stack.upload("cbr.mp4", stereo_clip.read_bytes(), metadata={
        "mp3_bitrate": "64k", "mp3_channels": "1", "mp3_samplerate": "22050"})
    vbr = stack.upload("vbr.mp4", stereo_clip.read_bytes(), metadata={"mp3_quality": "9", "mp3_samplerate": "32000"})
    loud = stack.upload("loud.mp4", quiet.read_bytes(), metadata={"mp3_loudnorm": "true"})
    plain = stack.upload("plain.mp4", quiet.read_bytes())
    stack.tick_until(_final(stack, cbr, vbr, loud, plain), what="four conversions")
    events = {e["data"]["input"]["name"]: e["data"] for e in stack.drain()}

    def fetch(name: str) -> tuple[Path, dict]:
        client = stack.blobs.get_blob_client(stack.settings.output_container, name)
        target = tmp_path / name
        target.write_bytes(client.download_blob().readall())
        return target, client.get_blob_properties().metadata

    path, meta = fetch("cbr.mp3")
    _, audio = probe(path)
    assert "22050 Hz" in audio and "mono" in audio and "64 kb/s" in audio, audio
    assert (meta["mp3_bitrate"], meta["mp3_channels"], meta["mp3_samplerate"]) == ("64k", "1", "22050")
    assert events["cbr.mp4"]["options"] == {"mp3_bitrate": "64k", "mp3_channels": "1", "mp3_samplerate": "22050",
                                            "mp3_loudnorm": "false"}
    assert stack.row(cbr)[Col.OPTIONS] == "mp3_bitrate=64k,mp3_channels=1,mp3_samplerate=22050,mp3_loudnorm=false"

    path, meta = fetch("vbr.mp3")
    _, audio = probe(path)
    assert "32000 Hz" in audio and "stereo" in audio, audio
    assert meta["mp3_quality"] == "9" and "mp3_bitrate" not in meta

    loud_path, meta = fetch("loud.mp3")
    plain_path, _ = fetch("plain.mp3")
    assert meta["mp3_loudnorm"] == "true"
    measured, untouched = integrated_loudness(loud_path), integrated_loudness(plain_path)
    print(f"loudnorm: integrated {measured} LUFS (without it: {untouched} LUFS; input clip {integrated_loudness(quiet)})")
    assert abs(measured - (-16.0)) <= 1.0, measured
    assert untouched < -30.0, untouched      # the same clip without the option stays quiet: the test can fail


def test_submit_uploads_waits_for_the_events_and_downloads_the_mp3s(stack, tmp_path, stereo_clip, silent_clip,
                                                                    capsys):
    """The producer command end to end: this test plays the Functions host (trigger on each new blob, a tick
    every half second) while `submit --wait --out` runs."""
    import threading

    folder = tmp_path / "clips"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.mp4").write_bytes(stereo_clip.read_bytes())
    (folder / "sub" / "b c.mp4").write_bytes(stereo_clip.read_bytes())
    (folder / "mute.mp4").write_bytes(silent_clip.read_bytes())
    (folder / "notes.txt").write_text("x")
    other = stack.upload("someone-else.txt", b"y")      # another producer's event: must stay in the queue
    settings_file = tmp_path / "local.settings.json"
    settings_file.write_text(json.dumps({"IsEncrypted": False, "Values": stack.values}))
    stop, seen = threading.Event(), set()

    def host():
        container = stack.blobs.get_container_client(stack.settings.input_container)
        while not stop.is_set():
            for blob in container.list_blobs():
                if (blob.name, blob.etag) not in seen:
                    seen.add((blob.name, blob.etag))
                    handlers.on_blob(container.get_blob_client(blob.name))
            stack.timer.tick()
            time.sleep(0.5)

    runtime.set_service(stack.service)
    thread = threading.Thread(target=host, daemon=True)
    thread.start()
    out = tmp_path / "out"
    try:
        code = producer_cli.main("submit", [str(folder), "--prefix", "run-1", "--option", "mp3_channels=1", "--wait",
                                            "--out", str(out), "--timeout", "120", "--json",
                                            "--settings", str(settings_file)])
    finally:
        stop.set()
        thread.join(30)
    captured = capsys.readouterr()
    assert captured.out, captured.err
    report = json.loads(captured.out)
    outcomes = {row["file"]: (row["outcome"], row["reason"]) for row in report["files"]}
    assert outcomes["run-1/a.mp4"] == ("succeeded", None) and outcomes["run-1/sub/b c.mp4"] == ("succeeded", None)
    assert outcomes["run-1/mute.mp4"][0] == "failed" and "no audio" in outcomes["run-1/mute.mp4"][1]
    assert outcomes["run-1/notes.txt"] == ("skipped", "not an .mp4 file")
    assert code == 1                                     # one file failed
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.mp3")) == ["a.mp3", "sub/b c.mp3"]
    assert "mono" in probe(out / "a.mp3")[1]
    time.sleep(3)   # submit looked at the other producer's event: it is invisible for 2 s, then back
    left = stack.drain()                                  # ours were consumed; the other producer's is still there
    assert [e["id"] for e in left] == [f"{other}.skipped"]


def test_submit_refuses_a_bad_option_before_uploading(stack, tmp_path, stereo_clip, capsys):
    settings_file = tmp_path / "local.settings.json"
    settings_file.write_text(json.dumps({"IsEncrypted": False, "Values": stack.values}))
    code = producer_cli.main("submit", [str(stereo_clip), "--option", "mp3_bitrate=100k", "--settings",
                                        str(settings_file)])
    assert code == 2 and "mp3_bitrate" in capsys.readouterr().err
    assert list(stack.blobs.get_container_client(stack.settings.input_container).list_blobs()) == []


def test_a_metadata_only_change_is_a_new_version_converted_again(stack, stereo_clip, tmp_path):
    """The documented choice (docs/events.md): Set Blob Metadata gives the blob a new ETag (checked here on real
    storage), so it is a new version - its own task, row, MP3 and event, made with the options it now carries."""
    first = stack.upload("talk.mp4", stereo_clip.read_bytes())
    stack.tick_until(_final(stack, first), what="first conversion")
    client = stack.blobs.get_blob_client(stack.settings.input_container, "talk.mp4")
    before = client.get_blob_properties().etag
    client.set_blob_metadata({"mp3_bitrate": "64k", "mp3_channels": "1"})
    after = client.get_blob_properties().etag
    assert naming.normalize_etag(after) != naming.normalize_etag(before)
    handlers.on_blob(client)                       # what the host's trigger (or the sweep) does with the change
    second = naming.task_id("talk.mp4", after)
    assert second != first
    stack.tick_until(_final(stack, second), what="second conversion")
    events = stack.drain()
    assert sorted(e["id"] for e in events) == sorted([f"{first}.succeeded", f"{second}.succeeded"])
    mp3 = tmp_path / "talk.mp3"
    out = stack.blobs.get_blob_client(stack.settings.output_container, "talk.mp3")
    mp3.write_bytes(out.download_blob().readall())
    assert "mono" in probe(mp3)[1] and "64 kb/s" in probe(mp3)[1]
    assert out.get_blob_properties().metadata["source_etag"] == after
