"""Fault suite: each failure is injected into a running local stack (Azurite + the Batch emulator, the app's
own trigger and timer code), and every upload must end in exactly one final row - with its MP3 where the
input was good. Run alone with `./dev test -m faults -s` (each case prints uploads, final rows, MP3s and
the ticks it took to converge).
"""
from __future__ import annotations

import subprocess
import time
from datetime import timedelta

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.core.rest import HttpRequest

from shared import naming
from shared.access import Containers, SasAccess
from shared.batch import API_VERSION
from shared.batch_types import BatchUnavailable
from shared.ledger import Col, State
from shared.liveness import LivenessAudit
from shared.newest_wins import STALE_OUTPUT
from shared.submit import Submitter, limits_from
from shared.trigger import blob_version
from devstack.ffmpeg import ffmpeg_exe
from tests.integration.test_timer import make_stack

pytestmark = [pytest.mark.integration, pytest.mark.faults]

FINAL = (State.SUCCEEDED.value, State.FAILED.value, State.SKIPPED.value, State.REJECTED.value)


@pytest.fixture
def stack(storage_connection_string, batch_emulator_factory):
    emulator = batch_emulator_factory(enable_autoscale_min_gap=timedelta(seconds=1), node_start_delay=0.3)
    s = make_stack(storage_connection_string, emulator)
    # The audit leaves rows younger than two minutes alone in production; here every row is old enough.
    t = s.timer
    t.audit = LivenessAudit(ledger=s.service.ledger, tasks=s.service.batch, reconciler=t.reconciler,
                            resubmitter=t.resubmitter, clock=t.clock, min_age=timedelta(0))
    yield s
    s.service.clients.batch.close()
    s.batch.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    from devstack import media
    return media.make_clip(tmp_path_factory.mktemp("clip") / "c.mp4", seconds=1.0, video=False).read_bytes()


def upload(stack, name: str, data: bytes) -> str:
    stack.upload(name, data)
    return naming.task_id(name, stack.blobs.get_blob_client(stack.settings.input_container, name)
                          .get_blob_properties().etag)


def rows(stack) -> list[dict]:
    try:
        return list(stack.table.query_entities("PartitionKey eq @pk", parameters={"pk": stack.settings.job_id}))
    except ResourceNotFoundError:  # no table yet: nothing was ever recorded
        return []


def converge(stack, names: list[str], what: str, timeout: float = 120.0) -> int:
    """Tick until every uploaded name has exactly one final row; the number of ticks it took."""
    ticks = 0
    deadline = time.monotonic() + timeout
    while True:
        stack.tick()
        ticks += 1
        by_name: dict[str, list[str]] = {}
        for row in rows(stack):
            by_name.setdefault(row[Col.INPUT_NAME], []).append(row[Col.STATE])
        if all(len(by_name.get(n, [])) == 1 and by_name[n][0] in FINAL for n in names):
            return ticks
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not converged after {ticks} ticks: {by_name}")
        time.sleep(0.2)


def report(stack, case: str, names: list[str], ticks: int) -> dict[str, dict]:
    final = {r[Col.INPUT_NAME]: r for r in rows(stack)}
    mp3s = {b.name for b in stack.blobs.get_container_client(stack.settings.output_container).list_blobs()}
    print(f"\n[faults] {case}: uploads={len(names)} final_rows={sum(1 for n in names if n in final)} "
          f"mp3s={sum(1 for n in names if naming.output_name(n) in mp3s)} ticks_to_converge={ticks}")
    return final


def assert_all_converted(stack, final: dict[str, dict], names: list[str]) -> None:
    mp3s = {b.name for b in stack.blobs.get_container_client(stack.settings.output_container).list_blobs()}
    for name in names:
        assert final[name][Col.STATE] == State.SUCCEEDED.value, final[name]
        assert naming.output_name(name) in mp3s


def test_task_deleted_while_queued_is_added_again(stack, clip):
    names = [f"del/{i}.mp4" for i in range(3)]
    ids = [upload(stack, n, clip) for n in names]
    for n in names:
        stack.trigger(n)
    stack.batch.delete_task(stack.row(ids[1])[Col.JOB_ID], ids[1])  # an operator's (or retention's) delete
    ticks = converge(stack, names, "task deleted")
    final = report(stack, "task deleted while queued", names, ticks)
    assert_all_converted(stack, final, names)
    assert final[names[1]][Col.RESUBMITS] == 1 and "vanished" in final[names[1]][Col.RESUBMIT_REASON]


def test_task_deleted_and_input_deleted_ends_failed_with_the_reason(stack, clip):
    task_id = upload(stack, "gone.mp4", clip)
    stack.trigger("gone.mp4")
    stack.batch.delete_task(stack.row(task_id)[Col.JOB_ID], task_id)
    stack.blobs.get_blob_client(stack.settings.input_container, "gone.mp4").delete_blob()
    ticks = converge(stack, ["gone.mp4"], "input deleted")
    final = report(stack, "task and input deleted", ["gone.mp4"], ticks)
    assert final["gone.mp4"][Col.STATE] == "failed"
    assert final["gone.mp4"][Col.REASON].startswith("input deleted before it could be converted (task vanished")


def test_job_deleted_mid_burst(stack, clip):
    names = [f"jobdel/{i}.mp4" for i in range(4)]
    for n in names[:2]:
        first = upload(stack, n, clip)
        stack.trigger(n)
    stack.batch.begin_delete_job(stack.row(first)[Col.JOB_ID], polling_interval=0).result()  # the queued tasks go with it
    for n in names[2:]:
        upload(stack, n, clip)
        stack.trigger(n)  # JobNotFound: the submit path creates the job again
    ticks = converge(stack, names, "job deleted")
    final = report(stack, "job deleted mid-burst", names, ticks)
    assert_all_converted(stack, final, names)
    assert all(final[n][Col.RESUBMITS] == 1 for n in names[:2])


def test_job_terminated_mid_burst(stack, clip):
    names = [f"jobterm/{i}.mp4" for i in range(4)]
    for n in names[:2]:
        first = upload(stack, n, clip)
        stack.trigger(n)
    # Terminate Job, as the REST reference documents it (the SDK's begin_terminate_job needs a private model).
    terminated = stack.batch.send_request(HttpRequest(
        "POST", f"/jobs/{stack.row(first)[Col.JOB_ID]}/terminate", params={"api-version": API_VERSION},
        json={"terminateReason": "operator"}))
    assert terminated.status_code == 202
    for n in names[2:]:
        upload(stack, n, clip)
        with pytest.raises(BatchUnavailable, match="JobCompleted"):
            stack.trigger(n)  # the host would retry, then poison; the upload is remembered for the timer
    assert stack.status()["PendingSince"] is not None
    ticks = converge(stack, names, "job terminated")
    final = report(stack, "job terminated mid-burst", names, ticks)
    assert_all_converted(stack, final, names)
    status = stack.status()
    assert status["JobState"].endswith(":active") and "deleted" in status["JobHealing"] and "PendingSince" not in status


def test_sas_expired_while_the_pool_was_parked(stack, clip):
    # Tasks minted with a 1 s SAS wait for a node longer than that: the first try is refused by storage.
    s = stack.service
    short = SasAccess(s.clients.blob_service, Containers(s.settings.output_container, s.settings.logs_container),
                      timedelta(seconds=1))
    submitter = Submitter(batch=s.batch, ledger=s.ledger, access=short, jobs=s.batch.jobs,
                          limits=limits_from(2, 0, 60))
    names = [f"sas/{i}.mp4" for i in range(2)]
    s.ensure_output_containers()
    for n in names:
        upload(stack, n, clip)
        submitter.handle(blob_version(stack.blobs.get_blob_client(s.settings.input_container, n)))
    time.sleep(2.5)
    ticks = converge(stack, names, "sas expired")
    final = report(stack, "SAS expired while parked", names, ticks)
    assert_all_converted(stack, final, names)
    assert all(final[n][Col.RESUBMITS] == 1 and "SAS" in final[n][Col.RESUBMIT_REASON] for n in names)


def test_output_container_deleted_before_the_upload(stack, clip):
    names = [f"out/{i}.mp4" for i in range(2)]
    for n in names:
        upload(stack, n, clip)
        stack.trigger(n)
    stack.blobs.delete_container(stack.settings.output_container)
    ticks = converge(stack, names, "output container deleted")
    final = report(stack, "output container deleted", names, ticks)
    assert_all_converted(stack, final, names)
    assert all("container" in final[n][Col.RESUBMIT_REASON] for n in names)


def test_batch_outage_uploads_are_submitted_by_the_first_tick_after_it(stack, clip):
    names = [f"outage/{i}.mp4" for i in range(3)]
    stack.emulator.set_faults(status=503, retryAfter=0, operations=["Task_Add"], count=1000)
    try:
        for n in names:
            upload(stack, n, clip)
            with pytest.raises(BatchUnavailable):
                stack.trigger(n)
        assert rows(stack) == []
        stack.tick()  # still down: the markers stay
        assert rows(stack) == []
    finally:
        stack.emulator.set_faults(count=0, rate=0)
    stack.tick()  # the first tick after the service is back submits every remembered upload
    assert sorted(r[Col.INPUT_NAME] for r in rows(stack)) == names
    ticks = converge(stack, names, "batch outage")
    final = report(stack, "Batch outage (Task_Add 503)", names, 1 + ticks)
    assert_all_converted(stack, final, names)


def test_batch_down_for_30_seconds_then_back(stack, clip):
    """Every Batch operation answers 503 for 30 s (the timer keeps ticking meanwhile); the uploads made
    during the outage are submitted by the first tick after it and converge."""
    names = [f"down/{i}.mp4" for i in range(3)]
    stack.emulator.set_faults(status=503, retryAfter=0, rate=1.0)
    ended = time.monotonic() + 30
    try:
        for n in names:
            upload(stack, n, clip)
            with pytest.raises(BatchUnavailable):
                stack.trigger(n)
        while time.monotonic() < ended:
            report_ = stack.tick()
            assert report_.errors  # the timer notices, records it, and carries on
            time.sleep(2)
    finally:
        stack.emulator.set_faults(count=0, rate=0)
    stack.tick()
    assert sorted(r[Col.INPUT_NAME] for r in rows(stack)) == names  # submitted by the first tick after
    ticks = converge(stack, names, "30 s outage")
    final = report(stack, "Batch down 30 s", names, 1 + ticks)
    assert_all_converted(stack, final, names)


def test_trigger_dies_between_adding_the_task_and_writing_its_row(stack, clip):
    """The host is killed mid-invocation after Batch accepted the task: no row was written and the host never
    fires again. The reconciler adopts the task from Batch, and the file still ends in one final row."""
    class Killed(BaseException):
        pass

    class DyingLedger:
        def record(self, row):
            raise Killed()

        def same_output_rows(self, *args):
            return []

    s = stack.service
    dying = Submitter(batch=s.batch, ledger=DyingLedger(), access=s.access, jobs=s.batch.jobs,
                      limits=limits_from(2, 0, 60))
    s.ensure_output_containers()
    upload(stack, "killed.mp4", clip)
    with pytest.raises(Killed):
        dying.handle(blob_version(stack.blobs.get_blob_client(s.settings.input_container, "killed.mp4")))
    assert rows(stack) == []
    ticks = converge(stack, ["killed.mp4"], "host killed")
    final = report(stack, "host killed mid-invocation", ["killed.mp4"], ticks)
    assert_all_converted(stack, final, ["killed.mp4"])
    assert final["killed.mp4"][Col.ADOPTED_AT]


def test_older_version_finishing_last_does_not_leave_its_mp3(stack, clip, tmp_path):
    """Re-upload while converting, where the newer version's trigger cannot see the older one (their triggers
    ran at the same moment: the older's row was not written yet), so the older is not terminated, converts a
    long input and uploads after the newer one. The tick sees the MP3 is the older version's and runs the
    newest again."""
    long_input = tmp_path / "long.mp4"
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "sine=frequency=440:sample_rate=44100:duration=1800", "-c:a", "flac", "-ac", "1",
                    "-strict", "-2", str(long_input)], check=True, timeout=120)
    s = stack.service
    older = upload(stack, "race.mp4", long_input.read_bytes())
    older_version = blob_version(stack.blobs.get_blob_client(s.settings.input_container, "race.mp4"))
    s.ensure_output_containers()
    assert s.submitter.add_task(older_version).value == "created"   # the older trigger, before its row write
    older_job = s.submitter.job_for(older_version)
    stack.tick_until(lambda: (t := s.batch.task(older_job, older)) is not None and t.state == "running", 60,
                     "the older version to start")
    # The ticks that woke the pool adopted the older task (no row yet); take that row away again so the
    # newer trigger runs exactly as it would in the race: before the older version's row exists.
    stack.table.delete_entity(s.settings.job_id, older)
    newer = upload(stack, "race.mp4", clip)
    stack.trigger("race.mp4")                                          # sees no older row: terminates nothing
    s.submitter.handle(older_version)                                  # the older trigger writes its row now
    assert s.batch.task(older_job, older).state == "running"  # not terminated

    def newest_in_place():
        states = {r["RowKey"]: r for r in rows(stack)}
        if any(r[Col.STATE] not in FINAL for r in states.values()):
            return False
        props = stack.blobs.get_blob_client(stack.settings.output_container, "race.mp3").get_blob_properties()
        return naming.normalize_etag(props.metadata["source_etag"]) == naming.normalize_etag(
            stack.blobs.get_blob_client(stack.settings.input_container, "race.mp4").get_blob_properties().etag)

    stack.tick_until(newest_in_place, 120, "the newest version's MP3", every=0.2)
    older_row, newer_row = stack.row(older), stack.row(newer)
    print(f"\n[faults] re-upload while converting: older={older_row[Col.STATE]} newer={newer_row[Col.STATE]} "
          f"newer_resubmits={newer_row.get(Col.RESUBMITS, 0)}")
    assert older_row[Col.STATE] == "succeeded" and newer_row[Col.STATE] == "succeeded"
    # The older version's MP3 did land last (the case under test: only that triggers a re-run), the newest was
    # run again because of it, and the MP3 left is the newest's.
    assert newer_row[Col.RESUBMITS] == 1 and newer_row[Col.RESUBMIT_REASON] == STALE_OUTPUT
    mp3 = stack.blobs.get_blob_client(stack.settings.output_container, "race.mp3").get_blob_properties()
    assert mp3.metadata["batch_task_id"] == newer


def test_reupload_while_converting_stops_the_older_version(stack, clip, tmp_path):
    """The usual re-upload: the newer version's trigger finds the older one in flight in the ledger (whatever
    the blob's timestamps say: Azurite resets creation time on this single-shot overwrite) and stops it."""
    long_input = tmp_path / "long.mp4"
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "sine=frequency=440:sample_rate=44100:duration=1800", "-c:a", "flac", "-ac", "1",
                    "-strict", "-2", str(long_input)], check=True, timeout=120)
    older = upload(stack, "again.mp4", long_input.read_bytes())
    stack.trigger("again.mp4")
    stack.tick_until(lambda: stack.row(older)[Col.STATE] == "running", 60, "the older version to start")
    newer = upload(stack, "again.mp4", clip)
    stack.trigger("again.mp4")
    stack.tick_until(lambda: all(stack.row(t)[Col.STATE] in FINAL for t in (older, newer)), 120, "both final")
    older_row, newer_row = stack.row(older), stack.row(newer)
    print(f"\n[faults] re-upload while converting (detected): older={older_row[Col.STATE]} "
          f"newer={newer_row[Col.STATE]}")
    assert older_row[Col.STATE] == "failed" and "superseded by a newer upload" in older_row[Col.REASON]
    assert newer_row[Col.STATE] == "succeeded" and Col.RESUBMITS not in newer_row
    mp3 = stack.blobs.get_blob_client(stack.settings.output_container, "again.mp3").get_blob_properties()
    assert mp3.metadata["batch_task_id"] == newer
