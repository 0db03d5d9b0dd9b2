"""The handler at the Batch seam: what is submitted, skipped or rejected, and what is recorded."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pytest

from shared import naming
from shared.batch_types import AddOutcome, BatchUnavailable
from shared.ledger import State
from shared.job_periods import JobPeriods
from shared.submit import BlobVersion, Submitter
from shared.task_spec import TaskLimits

from .fakes import FakeAccess, FakeBatch, FakeLedger

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
ETAG = '"0x8DC0FFEE"'


@pytest.fixture
def parts():
    gateway, ledger, access = FakeBatch(), FakeLedger(), FakeAccess()
    submitter = Submitter(batch=gateway, ledger=ledger, access=access, jobs=JobPeriods("jobs", timedelta(hours=1)),
                          limits=TaskLimits(2, 1, timedelta(minutes=60)), clock=lambda: NOW)
    return submitter, gateway, ledger, access


def blob(name: str, etag: str | None = ETAG, size: int | None = 1000) -> BlobVersion:
    return BlobVersion(container="input", name=name, etag=etag, size=size, content_type="video/mp4")


def test_mp4_is_submitted_and_recorded_queued(parts):
    submitter, gateway, ledger, access = parts
    outcome = submitter.handle(blob("shows/ep 1.MP4", size=20 * 1024**3))
    assert outcome.state is State.QUEUED and outcome.task is AddOutcome.CREATED and outcome.ledger_written
    task_id = naming.task_id("shows/ep 1.MP4", ETAG)
    assert outcome.row_key == task_id and list(gateway.tasks) == [task_id.lower()]
    assert access.requests == [("input", "shows/ep 1.MP4")]
    row = ledger.rows[("jobs", task_id)]
    assert (row.state, row.task_id, row.output_name, row.input_size) == (State.QUEUED, task_id, "shows/ep 1.mp3",
                                                                          20 * 1024**3)
    entity = row.to_entity()
    assert entity["PartitionKey"] == "jobs" and entity["RowKey"] == task_id
    assert entity["InputName"] == "shows/ep 1.MP4" and entity["InputEtag"] == ETAG
    # No Last-Modified known: the period of "now"; the task went to the job the row names.
    assert entity["SubmittedAt"] == NOW and entity["State"] == "queued" and entity["JobId"] == "jobs-20261125-120000"
    assert gateway.jobs[task_id.lower()] == "jobs-20261125-120000"
    assert entity["InputSize"].value == 20 * 1024**3 and entity["InputSize"].edm_type.value == "Edm.Int64"


def test_duplicate_trigger_is_a_no_op(parts):
    submitter, gateway, ledger, _ = parts
    first = submitter.handle(blob("a.mp4"))
    second = submitter.handle(blob("a.mp4"))
    assert first.task is AddOutcome.CREATED and second.task is AddOutcome.ALREADY_EXISTS
    assert len(gateway.tasks) == 1 and len(ledger.rows) == 1 and not second.ledger_written


def test_reupload_is_new_work(parts):
    submitter, gateway, ledger, _ = parts
    submitter.handle(blob("a.mp4", etag='"0x1"'))
    submitter.handle(blob("a.mp4", etag='"0x2"'))
    assert len(gateway.tasks) == 2 and len(ledger.rows) == 2


def test_case_only_different_names_are_two_tasks(parts):
    submitter, gateway, _, _ = parts
    submitter.handle(blob("Clip.mp4"))
    submitter.handle(blob("clip.mp4"))
    assert len(gateway.tasks) == 2


def test_steady_state_costs_one_batch_call_and_one_table_write(parts):
    submitter, gateway, ledger, _ = parts
    submitter.handle(blob("a.mp4"))
    assert gateway.calls == [f"add_task:{naming.task_id('a.mp4', ETAG)}"] and ledger.writes == 1
    # One range read of the name's rows (older versions in flight, other inputs with the same MP3): reads only.
    assert ledger.queries == 1


def test_a_new_version_terminates_older_versions_still_in_flight_of_that_name_only(parts):
    submitter, gateway, ledger, _ = parts
    # Same readable prefix, other name ('a-b' starts like 'a-'): must not be touched.
    submitter.handle(blob("a-b.mp4", etag='"0x9"'))
    submitter.handle(blob("a.mp4", etag='"0x1"'))
    old_id = naming.task_id("a.mp4", '"0x1"')
    gateway.calls.clear()
    # Written after the older version was submitted: the older one is in flight and older, so it is stopped.
    outcome = submitter.handle(BlobVersion("input", "a.mp4", '"0x2"', 1000, "video/mp4",
                                           modified=NOW + timedelta(seconds=1)))
    new_id = naming.task_id("a.mp4", '"0x2"')
    assert outcome.state is State.QUEUED and outcome.row_key == new_id
    assert gateway.calls == [f"add_task:{new_id}", f"terminate_task:{old_id}"]
    assert ledger.queries == 3  # one range read per upload
    assert naming.task_id("a-b.mp4", '"0x9"').lower() in gateway.tasks


def test_overwrite_leaves_finished_versions_alone(parts):
    submitter, gateway, ledger, _ = parts
    submitter.handle(blob("a.mp4", etag='"0x1"'))
    old = ledger.rows[("jobs", naming.task_id("a.mp4", '"0x1"'))]
    ledger.rows[("jobs", old.row_key)] = type(old)(**{**old.__dict__, "state": State.SUCCEEDED})
    gateway.calls.clear()
    submitter.handle(BlobVersion("input", "a.mp4", '"0x2"', 1000, "video/mp4", modified=NOW + timedelta(seconds=1)))
    assert [c for c in gateway.calls if c.startswith("terminate_task")] == []


@pytest.mark.parametrize("version,state,reason", [
    (blob("notes.txt"), State.SKIPPED, "not an .mp4 file"),
    (blob("movie.mov"), State.SKIPPED, "not an .mp4 file"),
    (blob("gone.mp4", etag=None, size=None), State.SKIPPED, "blob no longer exists"),
    (blob("empty.mp4", size=0), State.REJECTED, "zero-byte blob"),
    (blob("a/../secret.mp4"), State.REJECTED, "'..' path segment"),
    (blob("x" * 1021 + ".mp4"), State.REJECTED, "longer than 1024"),
    (blob("bad\x07name.mp4"), State.REJECTED, "control"),
])
def test_bad_input_is_recorded_not_submitted(parts, caplog, version, state, reason):
    submitter, gateway, ledger, access = parts
    with caplog.at_level(logging.INFO, logger="mp4tomp3"):
        outcome = submitter.handle(version)
    assert outcome.state is state and reason in outcome.reason
    assert gateway.calls == [] and access.requests == []
    row = ledger.rows[("jobs", outcome.row_key)]
    assert row.state is state and reason in row.reason and row.task_id is None
    line = caplog.records[-1].getMessage()
    assert line.startswith(f"upload.{state.value} ") and reason.split("'")[0] in line
    # Duplicate trigger of the same bad version: no second row.
    assert not submitter.handle(version).ledger_written and len(ledger.rows) == 1


@pytest.mark.parametrize("name", ["$(touch pwned).mp4", "a b/ü;rm -rf.mp4", "'\"`.mp4", "y" * 1020 + ".mp4"])
def test_hostile_names_are_submitted_with_constant_command(parts, name):
    submitter, gateway, _, _ = parts
    outcome = submitter.handle(blob(name))
    assert outcome.state is State.QUEUED
    task = gateway.tasks[outcome.row_key.lower()]
    assert name[:-4] not in task.command_line
    assert task.output_files[0].destination.container.path == name[:-4] + ".mp3"


def test_logs_carry_name_and_task_id_but_never_a_sas(parts, caplog):
    submitter, _, _, _ = parts
    with caplog.at_level(logging.INFO, logger="mp4tomp3"):
        outcome = submitter.handle(blob("a b.mp4"))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert '"a b.mp4"' in text and outcome.row_key in text
    assert "secret" not in text and "sig=" not in text


def test_batch_outage_raises_and_writes_no_row(parts):
    submitter, gateway, ledger, _ = parts
    gateway.fail_with = BatchUnavailable("create task failed: HTTP 503 ServerBusy")
    with pytest.raises(BatchUnavailable):
        submitter.handle(blob("a.mp4"))
    assert ledger.rows == {}  # the host retries the invocation; TaskExists then makes it idempotent


def test_task_batch_refuses_as_invalid_is_rejected_not_retried(parts):
    from shared.batch_types import TaskRejected
    submitter, gateway, ledger, _ = parts
    gateway.fail_with = TaskRejected("InvalidPropertyValue", "The value provided for one of the properties is invalid.")
    outcome = submitter.handle(blob("odd.mp4"))
    assert outcome.state is State.REJECTED and "InvalidPropertyValue" in outcome.reason
    row = ledger.rows[("jobs", outcome.row_key)]
    assert row.state is State.REJECTED and row.task_id is None


def test_the_task_reads_the_version_the_trigger_saw(parts):
    submitter, gateway, ledger, access = parts
    version = BlobVersion("input", "v.mp4", ETAG, 1000, "video/mp4", version_id="2026-11-25T11:59:58.1234567Z")
    outcome = submitter.handle(version)
    assert access.versions == ["2026-11-25T11:59:58.1234567Z"]
    assert ledger.rows[("jobs", outcome.row_key)].to_entity()["InputVersionId"] == "2026-11-25T11:59:58.1234567Z"


def test_names_differing_only_in_the_extension_case_do_not_share_an_mp3(parts):
    submitter, gateway, ledger, _ = parts
    first = submitter.handle(blob("shows/clip.mp4", etag='"0x1"'))
    second = submitter.handle(blob("shows/clip.MP4", etag='"0x2"'))
    assert first.state is State.QUEUED and second.state is State.REJECTED
    assert "'shows/clip.mp4'" in second.reason and "'shows/clip.mp3'" in second.reason
    assert len(gateway.tasks) == 1  # the later upload converts nothing


def test_a_twin_that_was_deleted_does_not_block_the_name(parts):
    submitter, gateway, ledger, access = parts
    submitter.handle(blob("clip.mp4", etag='"0x1"'))
    gone = Submitter(batch=gateway, ledger=ledger, access=access, jobs=JobPeriods("jobs", timedelta(hours=1)), limits=submitter._limits,
                     clock=lambda: NOW, input_exists=lambda container, name: False)
    assert gone.handle(blob("clip.MP4", etag='"0x2"')).state is State.QUEUED


def test_a_late_trigger_of_an_older_version_does_not_stop_a_newer_one(parts):
    submitter, gateway, _, _ = parts
    submitter.handle(blob("a.mp4", etag='"0x2"'))  # the newer version, submitted at NOW
    gateway.calls.clear()
    # The older version's trigger read its properties before the overwrite and runs only now.
    submitter.handle(BlobVersion("input", "a.mp4", '"0x1"', 1000, "video/mp4", modified=NOW - timedelta(seconds=5)))
    assert [c for c in gateway.calls if c.startswith("terminate_task")] == []


def test_an_upload_larger_than_the_node_disk_allows_is_rejected_with_its_size(parts):
    submitter, gateway, ledger, access = parts
    capped = Submitter(batch=gateway, ledger=ledger, access=access, jobs=JobPeriods("jobs", timedelta(hours=1)), limits=submitter._limits,
                       clock=lambda: NOW, max_input_bytes=10 * 1024**3)
    outcome = capped.handle(blob("huge.mp4", size=20 * 1024**3))
    assert outcome.state is State.REJECTED and gateway.calls == []
    assert "20.0 GiB" in outcome.reason and "10.0 GiB" in outcome.reason and "MAX_INPUT_BYTES" in outcome.reason
    assert capped.handle(blob("fits.mp4", size=10 * 1024**3)).state is State.QUEUED


def with_meta(name: str, metadata: dict | None, etag: str = ETAG) -> BlobVersion:
    return BlobVersion(container="input", name=name, etag=etag, size=1000, content_type="video/mp4", metadata=metadata)


def test_per_file_options_reach_the_task_and_the_row(parts):
    submitter, gateway, ledger, _ = parts
    outcome = submitter.handle(with_meta("a.mp4", {"mp3_bitrate": "64k", "mp3_channels": "1", "owner": "x"}))
    task = gateway.tasks[outcome.row_key.lower()]
    assert "-b:a 64k -ac 1 -f mp3" in task.command_line and "-q:a" not in task.command_line
    assert ledger.rows[("jobs", outcome.row_key)].options == "mp3_bitrate=64k,mp3_channels=1,mp3_loudnorm=false"
    default = submitter.handle(with_meta("b.mp4", {}))
    assert ledger.rows[("jobs", default.row_key)].options == "mp3_quality=2,mp3_loudnorm=false"  # MP3_QUALITY


def test_an_invalid_option_is_rejected_naming_the_key_and_its_allowed_values_and_adds_no_task(parts):
    submitter, gateway, ledger, _ = parts
    outcome = submitter.handle(with_meta("a.mp4", {"mp3_bitrate": "100k"}))
    assert outcome.state is State.REJECTED and not gateway.tasks
    assert "mp3_bitrate" in outcome.reason and "32k, 40k" in outcome.reason and "320k" in outcome.reason
    assert ledger.rows[("jobs", outcome.row_key)].reason == outcome.reason


def test_same_version_same_options_is_one_task(parts):
    submitter, gateway, ledger, _ = parts
    meta = {"mp3_quality": "5"}
    first, second = submitter.handle(with_meta("a.mp4", meta)), submitter.handle(with_meta("a.mp4", dict(meta)))
    assert first.row_key == second.row_key and second.task is AddOutcome.ALREADY_EXISTS
    assert len(gateway.tasks) == 1 and len(ledger.rows) == 1


def test_a_metadata_only_change_is_a_new_version_converted_again_with_its_options(parts):
    """Documented choice (docs/events.md): Set Blob Metadata gives the blob a new ETag, so it is a new version
    (its own task, row and event), converted with the options it now carries."""
    submitter, gateway, ledger, _ = parts
    first = submitter.handle(with_meta("a.mp4", {}, etag='"0x1"'))
    second = submitter.handle(with_meta("a.mp4", {"mp3_bitrate": "96k"}, etag='"0x2"'))
    assert first.row_key != second.row_key and len(gateway.tasks) == 2
    assert "-b:a 96k" in gateway.tasks[second.row_key.lower()].command_line


def test_a_listing_without_metadata_reads_that_versions_own(parts):
    gateway, ledger, access = FakeBatch(), FakeLedger(), FakeAccess()
    asked: list[str] = []

    def read(version: BlobVersion):
        asked.append(version.etag)
        return {"mp3_channels": "2"} if version.etag == ETAG else None

    submitter = Submitter(batch=gateway, ledger=ledger, access=access, jobs=JobPeriods("jobs", timedelta(hours=1)),
                          limits=TaskLimits(2, 1, timedelta(minutes=60)), clock=lambda: NOW, read_metadata=read)
    ok = submitter.handle(blob("a.mp4"))
    assert "-ac 2" in gateway.tasks[ok.row_key.lower()].command_line
    gone = submitter.handle(blob("b.mp4", etag='"0xGONE"'))
    assert gone.state is State.SKIPPED and "replaced or deleted" in gone.reason and asked == [ETAG, '"0xGONE"']


def test_a_version_goes_to_the_job_of_the_period_it_was_written_in_whatever_path_submits_it(parts):
    submitter, gateway, ledger, _ = parts
    written = NOW - timedelta(minutes=70)  # the previous hourly period
    version = BlobVersion(container="input", name="late.mp4", etag=ETAG, size=10, modified=written)
    first = submitter.handle(version)
    again = submitter.handle(version)  # the sweep or a retry, later: same job, so TaskExists
    task_id = naming.task_id("late.mp4", ETAG)
    assert (first.task, again.task) == (AddOutcome.CREATED, AddOutcome.ALREADY_EXISTS)
    assert gateway.jobs[task_id.lower()] == "jobs-20261125-100000"
    assert ledger.rows[("jobs", task_id)].to_entity()["JobId"] == "jobs-20261125-100000"


def test_a_version_older_than_two_periods_goes_to_the_late_job(parts):
    submitter, gateway, _, _ = parts
    old = BlobVersion(container="input", name="old.mp4", etag=ETAG, size=10, modified=NOW - timedelta(days=3))
    submitter.handle(old)
    assert gateway.jobs[naming.task_id("old.mp4", ETAG).lower()] == "jobs-late"
