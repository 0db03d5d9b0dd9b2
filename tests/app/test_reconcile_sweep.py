"""The missed-upload sweep on real blobs and a real ledger table (Azurite); submission faked at the
Submitter seam (it is the trigger's own handler, tested in test_submit.py)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from azure.data.tables import TableClient, TableServiceClient
from azure.storage.blob import BlobServiceClient

from shared import naming
from shared.ledger import LedgerRow, State, Ledger
from shared.submit import BlobVersion, Outcome
from shared.sweep import SweepPosition, Sweeper
from tests.app.stack import unique

JOB = "job-sweep"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def env(storage_connection_string):
    blobs = BlobServiceClient.from_connection_string(storage_connection_string)
    container = unique("in-")
    blobs.create_container(container)
    name = unique("sweep")
    table = TableClient.from_connection_string(storage_connection_string, table_name=name)
    submitted: list[BlobVersion] = []

    def submit(version: BlobVersion) -> Outcome:
        submitted.append(version)
        return Outcome(State.QUEUED, naming.task_id(version.name, version.etag or ""))

    clock = Clock(datetime.now(timezone.utc) + timedelta(minutes=10))
    sweeper = Sweeper(blob_service=blobs, input_container=container, ledger=Ledger(table, JOB), submit=submit,
                      clock=clock, min_age=timedelta(minutes=5))
    yield dict(blobs=blobs, container=container, table=table, submitted=submitted, sweeper=sweeper, clock=clock)
    blobs.delete_container(container)
    TableServiceClient.from_connection_string(storage_connection_string).delete_table(name)


def _upload(env, name: str, data: bytes = b"mp4 bytes") -> str:
    return env["blobs"].get_blob_client(env["container"], name).upload_blob(data, overwrite=True)["etag"]


def test_only_mp4s_without_a_row_are_submitted(env):
    etag_known = _upload(env, "known.mp4")
    _upload(env, "missed folder/Missed é.MP4")
    _upload(env, "notes.txt")
    Ledger(env["table"], JOB).record(LedgerRow(
        job_id=JOB, row_key=naming.task_id("known.mp4", etag_known), state=State.SUCCEEDED, input_container="in",
        input_name="known.mp4", input_etag=etag_known, input_size=9, input_content_type=None, output_name=None,
        task_id=None, recorded_at=env["clock"].now))
    result = env["sweeper"].run(SweepPosition())
    assert [v.name for v in env["submitted"]] == ["missed folder/Missed é.MP4"]
    version = env["submitted"][0]
    assert version.container == env["container"] and version.size == 9 and version.etag
    assert result.blobs_listed == 3 and result.candidates == 2 and result.missing == 1 and result.submitted == 1
    assert result.pass_completed and result.pages == 1
    assert result.position == SweepPosition(covered_before=env["clock"].now - timedelta(minutes=5))


def test_blobs_younger_than_min_age_are_left_to_the_trigger(env):
    _upload(env, "fresh.mp4")
    env["clock"].now = datetime.now(timezone.utc) + timedelta(minutes=1)
    result = env["sweeper"].run(SweepPosition())
    assert env["submitted"] == [] and result.candidates == 0


def test_blobs_older_than_the_previous_pass_are_not_looked_up_again(env):
    _upload(env, "old.mp4")
    since = env["clock"].now  # the previous pass's cutoff is well after this blob (beyond the clock margin)
    env["clock"].now = since + timedelta(hours=1)
    result = env["sweeper"].run(SweepPosition(covered_before=since))
    assert result.candidates == 0 and env["submitted"] == []


def test_reupload_of_the_same_name_is_new_work(env):
    first = _upload(env, "clip.mp4", b"v1")
    Ledger(env["table"], JOB).record(LedgerRow(
        job_id=JOB, row_key=naming.task_id("clip.mp4", first), state=State.SUCCEEDED, input_container="in",
        input_name="clip.mp4", input_etag=first, input_size=2, input_content_type=None, output_name=None,
        task_id=None, recorded_at=env["clock"].now))
    second = _upload(env, "clip.mp4", b"v2 changed")
    env["sweeper"].run(SweepPosition())
    swept = [(v.name, naming.normalize_etag(v.etag)) for v in env["submitted"]]
    assert swept == [("clip.mp4", naming.normalize_etag(second))]


def test_a_failing_submit_does_not_complete_the_pass(env):
    _upload(env, "a.mp4")

    def broken(version):
        raise RuntimeError("Batch unavailable")

    sweeper = Sweeper(blob_service=env["blobs"], input_container=env["container"], ledger=Ledger(env["table"], JOB),
                      submit=broken, clock=env["clock"], min_age=timedelta(0))
    result = sweeper.run(SweepPosition())
    assert "Batch unavailable" in result.error and not result.pass_completed
    assert result.position.in_pass and result.position.marker is None and result.position.covered_before is None


def _sweeper(env, **kwargs) -> Sweeper:
    def submit(version: BlobVersion) -> Outcome:
        env["submitted"].append(version)
        return Outcome(State.QUEUED, naming.task_id(version.name, version.etag or ""))
    return Sweeper(blob_service=env["blobs"], input_container=env["container"], ledger=Ledger(env["table"], JOB),
                   submit=submit, clock=env["clock"], min_age=timedelta(minutes=5), **kwargs)


def test_a_pass_lists_a_bounded_number_of_pages_per_run_and_resumes_from_its_marker(env):
    names = [f"clip-{i:02d}.mp4" for i in range(7)]
    for name in names:
        _upload(env, name)
    sweeper = _sweeper(env, page_size=2, pages_per_tick=2)
    position, runs = SweepPosition(), []
    for _ in range(5):
        result = sweeper.run(position)
        runs.append((result.pages, result.blobs_listed, result.pass_completed))
        position = result.position
        if result.pass_completed:
            break
    # 7 blobs, 2 per page, 2 pages per run: 4 + 3 blobs over two runs, each blob once.
    assert runs == [(2, 4, False), (2, 3, True)]
    assert sorted(v.name for v in env["submitted"]) == names
    assert position.marker is None and not position.in_pass and position.covered_before is not None


def test_a_run_out_of_time_stops_after_one_page(env):
    for i in range(5):
        _upload(env, f"t{i}.mp4")
    result = _sweeper(env, page_size=2, pages_per_tick=10).run(SweepPosition(), time_left=lambda: 0.0)
    assert result.pages == 1 and result.blobs_listed == 2 and not result.pass_completed
    assert result.position.marker and result.position.in_pass


def test_a_blob_too_young_for_one_pass_is_found_by_the_next(env):
    sweeper = _sweeper(env)
    _upload(env, "late.mp4")
    env["clock"].now = datetime.now(timezone.utc) + timedelta(minutes=1)  # younger than min age for pass 1
    first = sweeper.run(SweepPosition())
    assert first.pass_completed and env["submitted"] == []
    env["clock"].now += timedelta(minutes=10)
    second = sweeper.run(first.position)
    assert [v.name for v in env["submitted"]] == ["late.mp4"] and second.candidates == 1


def test_a_failed_page_is_listed_again_next_run_and_earlier_pages_are_not(env):
    for i in range(3):
        _upload(env, f"f{i}.mp4")
    calls = []

    def flaky(version):
        calls.append(version.name)
        if len(calls) == 3:
            raise RuntimeError("Batch unavailable")
        return Outcome(State.QUEUED, "x")

    sweeper = Sweeper(blob_service=env["blobs"], input_container=env["container"], ledger=Ledger(env["table"], JOB),
                      submit=flaky, clock=env["clock"], min_age=timedelta(0), page_size=2, pages_per_tick=5)
    first = sweeper.run(SweepPosition())
    assert first.error and first.pages == 1 and first.position.marker and not first.pass_completed
    second = sweeper.run(first.position)
    assert second.pass_completed and second.error is None
    assert calls == ["f0.mp4", "f1.mp4", "f2.mp4", "f2.mp4"]
