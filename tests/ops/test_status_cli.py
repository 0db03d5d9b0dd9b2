"""`./dev status` (ops: `python -m ops status`) on real Azurite and the Batch emulator.

Ledger rows are written by the app's own submit path (shared.submit.Submitter + Ledger);
the reconciler's columns (state, failure, timing) are written the way the timer writes them.
Every test gets its own ledger table, job, pool and containers, so tests share one Azurite.
"""
from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from azure.data.tables import TableClient, UpdateMode
from azure.storage.blob import BlobServiceClient

from ops import commands as status_cli
from shared.access import Containers, SasAccess
from shared.ledger import Col, Ledger
from shared.job_periods import JobPeriods
from shared.submit import BlobVersion, Submitter, limits_from
from tests.app.fakes import FakeBatch
from tests.app.stack import SAMPLE, unique

pytestmark = pytest.mark.integration

# The well-known Azurite account (public, documented), without endpoints.
SAMPLE_CONNECTION_HEAD = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
                          "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;")
SAS_MARKERS = ("sig=", "se=", "AccountKey", "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq")


@dataclass
class Stack:
    """One test's slice of the local stack: settings file plus clients to seed and inspect it."""

    settings_path: Path
    values: dict[str, str]
    blobs: BlobServiceClient
    table: TableClient

    @property
    def job_id(self) -> str:
        return self.values["BATCH_JOB_ID"]

    @property
    def input(self) -> str:
        return self.values["INPUT_CONTAINER"]

    @property
    def logs(self) -> str:
        return self.values["LOGS_CONTAINER"]

    def upload(self, name: str, data: bytes) -> BlobVersion:
        client = self.blobs.get_blob_client(self.input, name)
        props = client.upload_blob(data, overwrite=True)
        return BlobVersion(self.input, name, props["etag"], len(data), "video/mp4")

    def reconciled(self, row_key: str, **columns) -> None:
        """Write what the timer's reconciler writes when it sees a task change."""
        self.table.update_entity({"PartitionKey": self.job_id, "RowKey": row_key, **columns}, mode=UpdateMode.MERGE)

    def row(self, row_key: str) -> dict:
        return self.table.get_entity(self.job_id, row_key)


def write_settings(path: Path, values: dict[str, str]) -> Path:
    path.write_text(json.dumps({"IsEncrypted": False, "Values": values}), encoding="utf-8")
    return path


def make_stack(tmp_path: Path, connection_string: str, **overrides: str) -> Stack:
    values = {**SAMPLE, "MEDIA_STORAGE": connection_string, "INPUT_CONTAINER": unique("in"),
              "OUTPUT_CONTAINER": unique("out"), "LOGS_CONTAINER": unique("logs"), "LEDGER_TABLE": unique("ledger"),
              "BATCH_JOB_ID": unique("job"), "BATCH_POOL_ID": unique("pool"), **overrides}
    blobs = BlobServiceClient.from_connection_string(connection_string)
    blobs.create_container(values["INPUT_CONTAINER"])
    table = TableClient.from_connection_string(connection_string, table_name=values["LEDGER_TABLE"])
    return Stack(write_settings(tmp_path / "local.settings.json", values), values, blobs, table)


def fake_batch_submitter(stack: Stack) -> tuple[Submitter, FakeBatch]:
    """The app's submit path with Batch faked at the gateway seam (tests that never reach Batch)."""
    gateway = FakeBatch()
    access = SasAccess(stack.blobs, Containers(stack.values["OUTPUT_CONTAINER"], stack.logs), timedelta(hours=4))
    submitter = Submitter(batch=gateway, ledger=Ledger(stack.table, stack.job_id), access=access, jobs=JobPeriods(stack.job_id, timedelta(hours=1)),
                          limits=limits_from(2, 1, 60))
    return submitter, gateway


def cli(capsys, stack_or_path, *argv: str) -> tuple[int, str, str]:
    path = stack_or_path.settings_path if isinstance(stack_or_path, Stack) else stack_or_path
    code = status_cli.main([*argv, "--settings", str(path)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_no_secrets(text: str) -> None:
    for marker in SAS_MARKERS:
        assert marker not in text, f"{marker!r} leaked into output"


# -- settings -----------------------------------------------------------------------------------

def test_invalid_setting_is_named(tmp_path, capsys):
    path = write_settings(tmp_path / "s.json", {**SAMPLE, "BATCH_POOL_ID": "no spaces allowed"})
    code, out, err = cli(capsys, path, "files")
    assert code == status_cli.EXIT_USAGE and out == ""
    assert "BATCH_POOL_ID" in err and "not a valid Batch id" in err and str(path) in err


def test_misspelt_required_setting_is_named_with_a_hint(tmp_path, capsys):
    values = {k: v for k, v in SAMPLE.items() if k != "BATCH_ACCOUNT_URL"}
    path = write_settings(tmp_path / "s.json", {**values, "BATCH_ACOUNT_URL": "http://127.0.0.1:1"})
    code, _, err = cli(capsys, path, "pool")
    assert code == status_cli.EXIT_USAGE
    assert "app setting BATCH_ACCOUNT_URL: is required but not set" in err
    assert "found BATCH_ACOUNT_URL: a misspelling of BATCH_ACCOUNT_URL?" in err


def test_env_settings_are_validated_too(capsys):
    env = {**SAMPLE, "MP3_QUALITY": "eleven"}
    code = status_cli.main(["--env", "failures"], env=env)
    err = capsys.readouterr().err
    assert code == status_cli.EXIT_USAGE and "MP3_QUALITY" in err and "the environment" in err


def test_missing_settings_file_and_bad_arguments(tmp_path, capsys):
    code, _, err = cli(capsys, tmp_path / "nope.json", "files")
    assert code == status_cli.EXIT_USAGE and "nope.json does not exist" in err
    assert status_cli.main(["files", "--state", "lost"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert status_cli.main(["resubmit", "--settings", str(tmp_path / "nope.json")]) == 2


def test_default_settings_file_is_found_in_the_working_directory(tmp_path, capsys, storage_connection_string):
    stack = make_stack(tmp_path, storage_connection_string)
    code = status_cli.main(["files", "--json"], cwd=tmp_path)
    assert code == 0
    assert json.loads(capsys.readouterr().out)["table"] == stack.values["LEDGER_TABLE"]


# -- files --------------------------------------------------------------------------------------

def seed_mixed_ledger(stack: Stack) -> dict[str, str]:
    """One row per state, written by the submit path; returns row keys by state."""
    submitter, _ = fake_batch_submitter(stack)
    mp4 = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64
    keys = {
        "queued": submitter.handle(stack.upload("waiting/[bold]queued clip.mp4", mp4)).row_key,
        "running": submitter.handle(stack.upload("busy.mp4", mp4)).row_key,
        "succeeded": submitter.handle(stack.upload("done/song ü.mp4", mp4)).row_key,
        "failed": submitter.handle(stack.upload("done/broken.mp4", mp4)).row_key,
        "skipped": submitter.handle(stack.upload("notes.txt", b"hello")).row_key,
        "rejected": submitter.handle(stack.upload("empty.mp4", b"")).row_key,
    }
    now = datetime.now(timezone.utc)
    stack.reconciled(keys["running"], State="running", StartedAt=now, UpdatedAt=now)
    stack.reconciled(keys["succeeded"], State="succeeded", StartedAt=now - timedelta(seconds=72.5), EndedAt=now,
                     DurationSeconds=72.5, ExitCode=0, UpdatedAt=now + timedelta(seconds=1))
    stack.reconciled(keys["failed"], State="failed", ExitCode=1, FailureCategory="usererror",
                     FailureMessage=("ffmpeg: Stream map '0:a:0' matches no streams; input "
                                     "https://acct.blob.core.windows.net/in/broken.mp4?sv=2024&sig=SECRET123"),
                     UpdatedAt=now + timedelta(seconds=2))
    return keys


def test_files_shows_each_state_with_reason_and_counts(tmp_path, capsys, storage_connection_string):
    stack = make_stack(tmp_path, storage_connection_string)
    seed_mixed_ledger(stack)
    code, out, err = cli(capsys, stack, "files")
    assert code == 0, err
    for text in ("waiting/[bold]queued clip.mp4", "waiting/[bold]queued clip.mp3", "done/song ü.mp3", "1m12.5s",
                 "matches no streams", "not an .mp4 file", "zero-byte blob"):
        assert text in out
    assert "6 files: queued 1, running 1, succeeded 1, failed 1, skipped 1, rejected 1" in out
    # Newest first: the failure was reconciled last.
    assert out.index("done/broken.mp4") < out.index("done/song ü.mp4")
    assert "https://acct.blob.core.windows.net/in/broken.mp4" in out
    assert_no_secrets(out)


def test_files_filters_by_state_prefix_and_limit(tmp_path, capsys, storage_connection_string):
    stack = make_stack(tmp_path, storage_connection_string)
    seed_mixed_ledger(stack)
    _, out, _ = cli(capsys, stack, "files", "--state", "failed", "--json")
    report = json.loads(out)
    assert [f["input_name"] for f in report["files"]] == ["done/broken.mp4"]
    assert report["counts"]["failed"] == 1 and report["total"] == 1
    assert report["files"][0]["exit_code"] == 1 and report["files"][0]["failure_category"] == "usererror"
    assert_no_secrets(out)

    _, out, _ = cli(capsys, stack, "files", "--name-prefix", "done/", "--json")
    assert sorted(f["input_name"] for f in json.loads(out)["files"]) == ["done/broken.mp4", "done/song ü.mp4"]

    _, out, _ = cli(capsys, stack, "files", "--limit", "2")
    assert "showing 2 of 6" in out and "done/broken.mp4" in out and "busy.mp4" not in out


def test_files_on_an_empty_account_says_nothing_was_uploaded(tmp_path, capsys, storage_connection_string):
    stack = make_stack(tmp_path, storage_connection_string)
    code, out, _ = cli(capsys, stack, "files")
    assert code == 0 and f"ledger table {stack.values['LEDGER_TABLE']} does not exist yet" in out


# -- failures -----------------------------------------------------------------------------------

def test_failures_show_category_exit_code_message_and_logs(tmp_path, capsys, storage_connection_string):
    stack = make_stack(tmp_path, storage_connection_string)
    keys = seed_mixed_ledger(stack)
    stack.blobs.create_container(stack.logs)
    for name in ("ffmpeg.log", "stderr.txt"):
        stack.blobs.get_blob_client(stack.logs, f"{keys['failed']}/{name}").upload_blob(b"log")
    code, out, _ = cli(capsys, stack, "failures")
    assert code == 0
    for text in ("done/broken.mp4", "usererror", "matches no streams", f"{stack.logs}/{keys['failed']}/ffmpeg.log",
                 f"{stack.logs}/{keys['failed']}/stderr.txt", "empty.mp4", "zero-byte blob", "failed 1, rejected 1"):
        assert text in out
    assert "busy.mp4" not in out and "notes.txt" not in out
    assert_no_secrets(out)

    _, out, _ = cli(capsys, stack, "failures", "--json")
    by_name = {f["input_name"]: f for f in json.loads(out)["failures"]}
    assert set(by_name) == {"done/broken.mp4", "empty.mp4"}
    broken = by_name["done/broken.mp4"]
    assert (broken["state"], broken["category"], broken["exit_code"]) == ("failed", "usererror", 1)
    assert broken["logs"] == [f"{stack.logs}/{keys['failed']}/ffmpeg.log", f"{stack.logs}/{keys['failed']}/stderr.txt"]
    assert by_name["empty.mp4"]["logs"] == [] and by_name["empty.mp4"]["message"] == "zero-byte blob"
    assert_no_secrets(out)


# -- resubmit without Batch: the refusals that happen before any Batch call ---------------------

def test_resubmit_refuses_what_it_cannot_resubmit(tmp_path, capsys, storage_connection_string):
    stack = make_stack(tmp_path, storage_connection_string)
    keys = seed_mixed_ledger(stack)
    # The failed blob was uploaded again (new ETag): the new version is its own task and row.
    submitter, _ = fake_batch_submitter(stack)
    newer = submitter.handle(stack.upload("done/broken.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x01" * 64))
    code, out, _ = cli(capsys, stack, "resubmit", "done/broken.mp4", "done/song ü.mp4", "never-uploaded.mp4",
                       "--yes", "--json")
    assert code == status_cli.EXIT_INCOMPLETE
    listed = json.loads(out)["results"]
    assert len(listed) == 3  # of the name's two versions only the failed one is considered
    results = {r["input_name"]: r for r in listed}
    assert newer.row_key in results["done/broken.mp4"]["detail"]
    assert results["done/broken.mp4"]["outcome"] == "superseded"
    assert results["done/song ü.mp4"]["outcome"] == "not_failed"
    assert results["never-uploaded.mp4"]["outcome"] == "not_found"
    assert stack.row(keys["failed"])["State"] == "failed"

    stack.blobs.get_blob_client(stack.input, "done/broken.mp4").delete_blob()
    code, out, _ = cli(capsys, stack, "resubmit", keys["failed"], "--yes")  # by task id
    assert code == status_cli.EXIT_INCOMPLETE and "input_missing" in out and "no longer exists" in out
    assert stack.row(keys["failed"])["State"] == "failed"


def test_resubmit_asks_first(tmp_path, capsys, monkeypatch, storage_connection_string):
    stack = make_stack(tmp_path, storage_connection_string)
    keys = seed_mixed_ledger(stack)
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    code, out, err = cli(capsys, stack, "resubmit", "--all-failed")
    assert code == status_cli.EXIT_INCOMPLETE
    assert "done/broken.mp4" in err and "resubmit them? [y/N]" in err and "nothing resubmitted" in err
    assert out == "" and stack.row(keys["failed"])["State"] == "failed"


# -- with the Batch emulator: pool, and resubmit re-running a failed task ----------------------

def emulated(tmp_path: Path, connection_string: str, emulator) -> Stack:
    return make_stack(tmp_path, connection_string, BATCH_ACCOUNT_URL=emulator.url,
                      BATCH_ACCOUNT_NAME=emulator.account_name, BATCH_ACCOUNT_KEY=emulator.account_key)


def app_service(stack: Stack):
    """The function app's own composition (submit path and timer) for this stack's settings."""
    from shared.runtime import build_service
    from shared.settings import Settings
    from shared.runtime import build_timer_service
    from shared.settings import TimerSettings

    service = build_service(Settings.from_env(stack.values))
    timer = build_timer_service(service, TimerSettings.from_env({"IDLE_GRACE_SECONDS": "600"}),
                                sleep=lambda s: time.sleep(min(s, 0.2)))
    return service, timer


def tick_until(timer, predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        report = timer.tick()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last tick errors: {report.errors}")
        time.sleep(0.2)


def test_pool_before_the_first_upload(tmp_path, capsys, storage_connection_string, batch_emulator_module):
    stack = emulated(tmp_path, storage_connection_string, batch_emulator_module)
    code, out, err = cli(capsys, stack, "pool")
    assert code == 0, err
    assert f"pool {stack.values['BATCH_POOL_ID']} does not exist yet" in out
    assert f"no job {stack.job_id}-… exists yet" in out and "no status row from the timer yet" in out


def test_pool_shows_allocation_nodes_tasks_and_the_timer_status_row(tmp_path, capsys, storage_connection_string,
                                                                   batch_emulator_module, stereo_clip):
    stack = emulated(tmp_path, storage_connection_string, batch_emulator_module)
    service, timer = app_service(stack)
    service.ensure_output_containers()
    data = stereo_clip.read_bytes()
    key = service.submitter.handle(stack.upload("tone.mp4", data)).row_key
    tick_until(timer, lambda: stack.row(key)["State"] == "succeeded", what="the conversion")

    code, out, err = cli(capsys, stack, "pool", "--json")
    assert code == 0, err
    report = json.loads(out)
    pool = report["pool"]
    assert pool["allocation_state"] in ("steady", "resizing") and pool["vm_size"].lower() == "standard_d2ds_v5"
    assert pool["current_dedicated_nodes"] >= 1 and pool["target_dedicated_nodes"] >= 1
    assert report["node_counts"]["dedicated"]["total"] == pool["current_dedicated_nodes"]
    assert report["task_counts"]["succeeded"] == 1 and report["task_counts"]["failed"] == 0
    summary = next(r for r in report["status_rows"] if r["row"] == "summary")
    assert summary["PoolId"] == stack.values["BATCH_POOL_ID"] and summary["JobId"].startswith(f"{stack.job_id}-")
    assert [job["state"] for job in report["jobs"]] == ["active"] and report["jobs"][0]["tasks"]["succeeded"] == 1
    assert_no_secrets(out)

    code, out, _ = cli(capsys, stack, "pool")
    assert f"pool {stack.values['BATCH_POOL_ID']}" in out and "dedicated nodes" in out
    assert "succeeded 1" in out and "timer status row summary" in out and "LastTickAt" in out


def test_resubmit_runs_a_failed_task_again(tmp_path, capsys, storage_connection_string, batch_emulator_module,
                                           silent_clip):
    stack = emulated(tmp_path, storage_connection_string, batch_emulator_module)
    service, timer = app_service(stack)
    service.ensure_output_containers()
    name = "no audio/silent clip.mp4"
    key = service.submitter.handle(stack.upload(name, silent_clip.read_bytes())).row_key
    tick_until(timer, lambda: stack.row(key)["State"] == "failed", what="the first failure")
    first = service.clients.batch.get_task(stack.row(key)[Col.JOB_ID], key)

    code, out, _ = cli(capsys, stack, "failures")
    assert code == 0 and name in out and f"{stack.logs}/{key}/ffmpeg.log" in out
    failed_row = stack.row(key)
    # ffmpeg's own error line (the reconciler reads it from the uploaded log) and Batch's category/code.
    assert failed_row["FfmpegError"] and failed_row["FfmpegError"] in out
    assert f"usererror / {failed_row['FailureCode']}" in out and str(failed_row[Col.EXIT_CODE]) in out

    resubmitted_at = datetime.now(timezone.utc)
    code, out, err = cli(capsys, stack, "resubmit", name, "--yes", "--json")
    assert code == 0, (out, err)
    [result] = json.loads(out)["results"]
    assert (result["input_name"], result["task_id"], result["outcome"]) == (name, key, "resubmitted")
    row = stack.row(key)
    assert row["State"] == "queued"
    for column in (Col.FAILURE_MESSAGE, Col.FAILURE_CATEGORY, Col.EXIT_CODE, Col.ENDED_AT, Col.REASON):
        assert column not in row
    assert row[Col.INPUT_NAME] == name and row[Col.TASK_ID] == key
    again = service.clients.batch.get_task(stack.row(key)[Col.JOB_ID], key)
    assert again.creation_time > first.creation_time  # a new task under the same id
    assert_no_secrets(out)

    tick_until(timer, lambda: stack.row(key)["State"] == "failed", what="the second run")
    rerun = service.clients.batch.get_task(stack.row(key)[Col.JOB_ID], key)
    assert rerun.execution_info.start_time >= resubmitted_at - timedelta(seconds=1)
    assert rerun.execution_info.exit_code != 0

    # Nothing left to resubmit once the blob is gone.
    stack.blobs.get_blob_client(stack.input, name).delete_blob()
    code, out, _ = cli(capsys, stack, "resubmit", "--all-failed", "--yes")
    assert code == status_cli.EXIT_INCOMPLETE and "input_missing" in out
    assert service.clients.batch.get_task(stack.row(key)[Col.JOB_ID], key).creation_time == rerun.creation_time


def test_resubmit_leaves_a_task_that_batch_still_runs(tmp_path, capsys, storage_connection_string,
                                                      batch_emulator_module, stereo_clip):
    stack = emulated(tmp_path, storage_connection_string, batch_emulator_module)
    service, _ = app_service(stack)  # no timer tick: the new pool stays at zero nodes, the task active
    service.ensure_output_containers()
    key = service.submitter.handle(stack.upload("waiting.mp4", stereo_clip.read_bytes())).row_key
    stack.reconciled(key, State="failed", FailureMessage="marked failed by hand")
    created = service.clients.batch.get_task(stack.row(key)[Col.JOB_ID], key).creation_time
    code, out, _ = cli(capsys, stack, "resubmit", "waiting.mp4", "--yes")
    assert code == status_cli.EXIT_INCOMPLETE and "task_busy" in out and "task is still active" in out
    assert stack.row(key)["State"] == "failed"
    assert service.clients.batch.get_task(stack.row(key)[Col.JOB_ID], key).creation_time == created


def test_unreachable_service_is_reported_with_a_hint(capsys):
    closed = "http://127.0.0.1:9"  # discard port: nothing listens
    env = {**SAMPLE, "MEDIA_STORAGE": f"{SAMPLE_CONNECTION_HEAD}BlobEndpoint={closed}/devstoreaccount1;"
                                      f"TableEndpoint={closed}/devstoreaccount1;", "BATCH_ACCOUNT_URL": closed}
    code = status_cli.main(["files", "--env"], env=env)
    err = capsys.readouterr().err
    assert code == status_cli.EXIT_INCOMPLETE and "cannot reach the service" in err and "./dev start" in err
    assert "AccountKey" not in err
