"""Reconcile against a real table (Azurite), with Batch faked at one seam: the TaskSource.

Table calls are counted at the HTTP transport, so "no writes" means no request was sent.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from azure.data.tables import TableClient, TableServiceClient, UpdateMode
from azure.storage.blob import BlobServiceClient

from shared.batch_types import TaskFailure, TaskSnapshot
from shared.batch_types import TaskOrigin as Origin  # what the task itself says of an adopted file
from shared.failure_logs import BlobFailureLog
from shared.ffmpeg import reason as ffmpeg_reason
from shared.ledger import STATUS_PARTITION, WATERMARK_ROW, Col, Ledger, LedgerRow, State
from shared.reconcile import Reconciler
from shared.task_columns import ledger_state
from tests.app.stack import CountingTransport, unique

JOB = "ffmpeg-jobs"
JOBS = [f"{JOB}-20260301-100000"]
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=timezone.utc)
OUTPUT_BASE = "https://acct.blob.core.windows.net/output/"


class FakeTasks:
    """A job's tasks as the service would list them: $filter on stateTransitionTime, deletes."""

    def __init__(self) -> None:
        self.tasks: dict[str, TaskSnapshot] = {}
        self.origins: dict[str, Origin] = {}
        self.list_calls: list[datetime | None] = []
        self.deleted: list[str] = []

    def put(self, task: TaskSnapshot, origin: Origin | None = None) -> None:
        self.tasks[task.task_id] = task
        if origin:
            self.origins[task.task_id] = origin

    page_size = 1000

    def task_change_pages(self, job_id, since, token=None):
        """Pages of the changed tasks in insertion order; the token is the next page's start index."""
        if token is None:
            self.list_calls.append(since)
        changed = [t for t in self.tasks.values() if since is None or t.state_transition_time >= since]
        start = int(token or 0)
        while True:
            page = changed[start:start + self.page_size]
            start += self.page_size
            yield page, (str(start) if start < len(changed) else None)
            if start >= len(changed):
                return

    def task_origin(self, job_id, task_id):
        return self.origins.get(task_id) if task_id in self.tasks else None

    def delete_task(self, job_id, task_id):
        self.tasks.pop(task_id, None)
        self.deleted.append(task_id)
        return True


def task(task_id: str, state: str, at: datetime, **kw) -> TaskSnapshot:
    base = dict(task_id=task_id, state=state, state_transition_time=at, creation_time=T0, exit_code=None,
                result=None, failure=None, retry_count=0, requeue_count=0, node_id=None, start_time=None, end_time=None)
    base.update(kw)
    return TaskSnapshot(**base)


def running(task_id, at, node="node-1"):
    return task(task_id, "running", at, node_id=node, start_time=at)


def succeeded(task_id, at, start):
    return task(task_id, "completed", at, node_id="node-1", start_time=start, end_time=at, exit_code=0,
                result="success")


def failed(task_id, at, start, retries=1):
    return task(task_id, "completed", at, node_id="node-2", start_time=start, end_time=at, exit_code=1,
                result="failure", retry_count=retries,
                failure=TaskFailure("usererror", "FailureExitCode",
                                    "The task exited with an exit code representing a failure"))


class Clock:
    """The function's clock: after the task transitions the tests list (a listing never marks past its start)."""

    def __init__(self, now=T0 + timedelta(hours=1)):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def env(storage_connection_string):
    transport = CountingTransport()
    name = unique("rec")
    table = TableClient.from_connection_string(storage_connection_string, table_name=name, transport=transport)
    table.create_table()
    blobs = BlobServiceClient.from_connection_string(storage_connection_string)
    logs = unique("logs")
    blobs.create_container(logs)
    tasks = FakeTasks()
    clock = Clock()

    def make(overlap=timedelta(seconds=60)) -> Reconciler:
        return Reconciler(tasks=tasks, ledger=Ledger(table, JOB), overlap=overlap,
                          failure_log=BlobFailureLog(blobs, logs),
                          output_url=lambda n: OUTPUT_BASE + n + "?sv=2024&sig=SECRET", clock=clock)

    yield dict(table=table, transport=transport, tasks=tasks, clock=clock, make=make, blobs=blobs, logs=logs)
    TableServiceClient.from_connection_string(storage_connection_string).delete_table(name)


def submit_row(table: TableClient, task_id: str, name: str) -> None:
    Ledger(table, JOB).record(LedgerRow(job_id=JOB, row_key=task_id, state=State.QUEUED, input_container="input",
                                        input_name=name, input_etag="0x1", input_size=10, input_content_type=None,
                                        output_name=name[:-4] + ".mp3", task_id=task_id, recorded_at=T0))


# What the pinned ffmpeg (imageio-ffmpeg 0.8.1) writes with -loglevel error for these inputs.
NO_AUDIO_LOG = """Stream map '' matches no streams.
To ignore this, add a trailing '?' to the map.
Failed to set value '0:a:0' for option 'map': Invalid argument
Error parsing options for output file output.mp3.
Error opening output files: Invalid argument
"""
CORRUPT_LOG = """[in#0 @ 0x563c2a89e140] moov atom not found
[in#0 @ 0x563c2a89ddc0] Error opening input: Invalid data found when processing input
Error opening input file input.mp4.
Error opening input files: Invalid data found when processing input
"""


@pytest.mark.parametrize("log,expected", [
    (NO_AUDIO_LOG, "the input has no audio stream (ffmpeg: Stream map '' matches no streams.)"),
    (CORRUPT_LOG, "the input is not a readable MP4 (corrupt or truncated upload) "
                  "(ffmpeg: moov atom not found / Error opening input: Invalid data found when processing input)"),
    ("Conversion failed!\n", "Conversion failed!"),
    ("\n\n", None),
])
def test_ffmpeg_reason_picks_the_cause_not_the_wrap_up(log, expected):
    assert ffmpeg_reason(log) == expected


def test_ffmpeg_reason_never_keeps_a_sas():
    reason = ffmpeg_reason("https://acct.blob.core.windows.net/c/b?sv=1&sig=abc: Server returned 403 Forbidden\n")
    assert reason.startswith("https://acct.blob.core.windows.net/c/b") and "403 Forbidden" in reason
    assert "sig" not in reason and "sv=" not in reason


def writes(transport: CountingTransport, mark: int) -> list:
    return [r for r in transport.since(mark) if r[1] != "GET"]


def test_rows_go_queued_running_succeeded_with_times_node_and_output_url(env):
    table, tasks, rec = env["table"], env["tasks"], env["make"]()
    submit_row(table, "clip-a", "folder/clip a.mp4")
    tasks.put(task("clip-a", "active", T0))
    rec.run(JOBS)
    assert table.get_entity(JOB, "clip-a")[Col.STATE] == "queued"

    tasks.put(running("clip-a", T0 + timedelta(seconds=5)))
    rec.run(JOBS)
    row = table.get_entity(JOB, "clip-a")
    assert row[Col.STATE] == "running" and row[Col.NODE_ID] == "node-1"
    assert row[Col.STARTED_AT] == T0 + timedelta(seconds=5)

    tasks.put(succeeded("clip-a", T0 + timedelta(seconds=47, milliseconds=250), start=T0 + timedelta(seconds=5)))
    result = rec.run(JOBS)
    row = table.get_entity(JOB, "clip-a")
    assert row[Col.STATE] == "succeeded" and row[Col.EXIT_CODE] == 0
    assert row[Col.DURATION_SECONDS] == pytest.approx(42.25)
    assert row[Col.ENDED_AT] == T0 + timedelta(seconds=47, milliseconds=250)
    assert row[Col.OUTPUT_URL] == OUTPUT_BASE + "folder/clip a.mp3"  # never the SAS
    assert row[Col.INPUT_NAME] == "folder/clip a.mp4"  # the submit row's columns survive the merge
    assert result.newly_succeeded == 1


def test_failure_carries_category_code_message_and_the_ffmpeg_error_line(env):
    table, tasks, rec = env["table"], env["tasks"], env["make"]()
    submit_row(table, "bad-1", "bad.mp4")
    env["blobs"].get_blob_client(env["logs"], "bad-1/ffmpeg.log").upload_blob(NO_AUDIO_LOG.encode())
    tasks.put(failed("bad-1", T0 + timedelta(seconds=30), start=T0 + timedelta(seconds=10), retries=1))
    result = rec.run(JOBS)
    row = table.get_entity(JOB, "bad-1")
    assert row[Col.STATE] == "failed" and row[Col.EXIT_CODE] == 1 and row[Col.RETRIES] == 1
    assert row[Col.FAILURE_CATEGORY] == "usererror" and row[Col.FAILURE_CODE] == "FailureExitCode"
    assert "exit code representing a failure" in row[Col.FAILURE_MESSAGE]
    assert row[Col.FFMPEG_ERROR] == "the input has no audio stream (ffmpeg: Stream map '' matches no streams.)"
    assert row[Col.REASON] == row[Col.FFMPEG_ERROR]
    assert Col.OUTPUT_URL not in row
    assert result.newly_failed == 1


def test_failure_without_a_log_keeps_the_service_reason(env):
    table, tasks, rec = env["table"], env["tasks"], env["make"]()
    submit_row(table, "gone-1", "gone.mp4")
    tasks.put(task("gone-1", "completed", T0 + timedelta(seconds=3), result="failure",
                   failure=TaskFailure("usererror", "BlobNotFound", "The specified blob does not exist.")))
    rec.run(JOBS)
    row = table.get_entity(JOB, "gone-1")
    assert row[Col.STATE] == "failed" and row[Col.FAILURE_CODE] == "BlobNotFound"
    assert row[Col.REASON] == "The specified blob does not exist." and Col.FFMPEG_ERROR not in row


def test_a_terminated_task_says_it_was_superseded(env):
    table, tasks, rec = env["table"], env["tasks"], env["make"]()
    submit_row(table, "old-1", "same.mp4")
    tasks.put(task("old-1", "completed", T0 + timedelta(seconds=3), result="failure",
                   failure=TaskFailure("usererror", "TaskEnded", "Task Was Ended by User Request")))
    rec.run(JOBS)
    row = table.get_entity(JOB, "old-1")
    assert row[Col.STATE] == "failed" and row[Col.FAILURE_CODE] == "TaskEnded"
    assert "superseded by a newer upload of the same name" in row[Col.REASON]
    assert row[Col.FAILURE_MESSAGE] == "Task Was Ended by User Request"


def test_watermark_advances_and_a_tick_without_changes_writes_nothing(env):
    table, tasks, transport = env["table"], env["tasks"], env["transport"]
    rec = env["make"](overlap=timedelta(seconds=60))
    for i in range(5):
        submit_row(table, f"t{i}", f"t{i}.mp4")
        tasks.put(succeeded(f"t{i}", T0 + timedelta(seconds=10 * i), start=T0))
    first = rec.run(JOBS)
    assert first.watermark_after == T0 + timedelta(seconds=40)
    assert table.get_entity(STATUS_PARTITION, WATERMARK_ROW)[Col.WATERMARK] == T0 + timedelta(seconds=40)
    assert first.transactions == 1 and first.updated == 5

    mark = transport.mark()
    again = rec.run(JOBS)
    assert writes(transport, mark) == []
    assert tasks.list_calls[-1] == T0 + timedelta(seconds=40) - timedelta(seconds=60)  # watermark - overlap
    assert again.listed == 5 and again.unchanged == 5 and again.transactions == 0
    # A fresh process (no row cache) re-reads but still writes nothing.
    mark = transport.mark()
    env["make"](overlap=timedelta(seconds=60)).run(JOBS)
    assert writes(transport, mark) == []

    tasks.put(running("t9", T0 + timedelta(minutes=5)), Origin("t9", "late.mp4", "input", "0x9", "late.mp3", T0))
    later = rec.run(JOBS)
    assert later.adopted == 1 and later.watermark_after == T0 + timedelta(minutes=5)


def test_unknown_task_is_adopted_with_its_origin(env):
    table, tasks, rec = env["table"], env["tasks"], env["make"]()
    tasks.put(succeeded("orphan-x", T0 + timedelta(seconds=20), start=T0),
              Origin("orphan-x", "old/deploy é.mp4", "input", "0xABC", "old/deploy é.mp3", T0 - timedelta(hours=1)))
    result = rec.run(JOBS)
    row = table.get_entity(JOB, "orphan-x")
    assert result.adopted == 1
    assert row[Col.STATE] == "succeeded" and row[Col.INPUT_NAME] == "old/deploy é.mp4"
    assert row[Col.INPUT_ETAG] == "0xABC" and row[Col.TASK_ID] == "orphan-x"
    assert row[Col.OUTPUT_URL] == OUTPUT_BASE + "old/deploy é.mp3"
    assert row[Col.ADOPTED_AT] == env["clock"].now
    # the trigger's late insert-only write cannot overwrite the adopted row
    submit_row(table, "orphan-x", "old/deploy é.mp4")
    assert table.get_entity(JOB, "orphan-x")[Col.STATE] == "succeeded"


def test_task_deleted_before_adoption_is_skipped_not_fatal(env):
    tasks, rec = env["tasks"], env["make"]()
    tasks.put(succeeded("ghost", T0, start=T0))  # no origin: get_task answers TaskNotFound
    result = rec.run(JOBS)
    assert result.vanished == 1 and result.complete


def test_an_older_listing_never_regresses_a_newer_row(env):
    table, tasks, rec = env["table"], env["tasks"], env["make"]()
    submit_row(table, "m1", "m1.mp4")
    tasks.put(succeeded("m1", T0 + timedelta(seconds=50), start=T0))
    rec.run(JOBS)
    stale = env["make"]()  # another process that lists late
    tasks.put(running("m1", T0 + timedelta(seconds=10)))
    result = stale.run(JOBS)
    assert table.get_entity(JOB, "m1")[Col.STATE] == "succeeded"
    assert result.updated == 0


def test_many_changes_go_in_transactions_of_at_most_100(env):
    table, tasks, transport = env["table"], env["tasks"], env["transport"]
    rec = env["make"]()
    for i in range(250):
        submit_row(table, f"b{i:03d}", f"b{i}.mp4")
        tasks.put(running(f"b{i:03d}", T0 + timedelta(milliseconds=i)))
    mark = transport.mark()
    result = rec.run(JOBS)
    batches = [r for r in transport.since(mark) if r[1] == "POST" and r[2].endswith("$batch")]
    assert result.updated == 250 and result.transactions == 3 and len(batches) == 3
    gets = [r for r in transport.since(mark) if r[1] == "GET"]
    assert len(gets) <= 3  # watermark + one partition scan, not 250 point reads
    states = {e["RowKey"]: e[Col.STATE] for e in table.query_entities("PartitionKey eq @p", parameters={"p": JOB})}
    assert set(states.values()) == {"running"} and len(states) == 250


class ConflictingTable:
    """Delegates to a TableClient; before the first transaction, another writer touches one row."""

    def __init__(self, table: TableClient, row_key: str) -> None:
        self._table = table
        self._row_key = row_key
        self.conflicts = 0

    def submit_transaction(self, operations):
        if self.conflicts == 0:
            self.conflicts += 1
            self._table.update_entity({"PartitionKey": JOB, "RowKey": self._row_key, "Touched": True},
                                      mode=UpdateMode.MERGE)
        return self._table.submit_transaction(operations)

    def __getattr__(self, name):
        return getattr(self._table, name)


def test_etag_conflict_is_reread_and_redone_once(env):
    table, tasks = env["table"], env["tasks"]
    submit_row(table, "c1", "c1.mp4")
    submit_row(table, "c2", "c2.mp4")
    tasks.put(running("c1", T0))
    tasks.put(running("c2", T0))
    wrapped = ConflictingTable(table, "c2")
    rec = Reconciler(tasks=tasks, ledger=Ledger(wrapped, JOB), overlap=timedelta(seconds=60), failure_log=None,
                     output_url=None, clock=env["clock"])
    result = rec.run(JOBS)
    assert wrapped.conflicts == 1 and result.complete and result.updated == 2
    assert len(result.errors) == 1  # the first transaction was refused on the ETag, the redo succeeded
    row = table.get_entity(JOB, "c2")
    assert row[Col.STATE] == "running" and row["Touched"] is True


def test_failed_writes_hold_the_watermark_back(env):
    table, tasks = env["table"], env["tasks"]
    submit_row(table, "w1", "w1.mp4")
    tasks.put(running("w1", T0 + timedelta(seconds=30)))

    class Broken(ConflictingTable):
        def submit_transaction(self, operations):
            raise_from = self._table.submit_transaction([("update", {"PartitionKey": JOB, "RowKey": "missing"},
                                                          {"mode": UpdateMode.MERGE})])
            return raise_from

    rec = Reconciler(tasks=tasks, ledger=Ledger(Broken(table, "w1"), JOB), overlap=timedelta(seconds=60),
                     failure_log=None, output_url=None, clock=env["clock"])
    result = rec.run(JOBS)
    assert not result.complete and result.write_failures == 1
    assert result.watermark_after is None
    assert table.get_entity(JOB, "w1")[Col.STATE] == "queued"


@pytest.mark.parametrize("state,result,exit_code,expected", [
    ("active", None, None, State.QUEUED), ("preparing", None, None, State.RUNNING),
    ("running", None, None, State.RUNNING), ("completed", "success", 0, State.SUCCEEDED),
    ("completed", "failure", 1, State.FAILED), ("completed", None, None, State.FAILED),
])
def test_ledger_state_mapping(state, result, exit_code, expected):
    assert ledger_state(task("x", state, T0, result=result, exit_code=exit_code)) is expected


def test_retry_in_progress_shows_queued_with_retry_count(env):
    table, tasks, rec = env["table"], env["tasks"], env["make"]()
    submit_row(table, "r1", "r1.mp4")
    tasks.put(replace(task("r1", "active", T0 + timedelta(seconds=9)), retry_count=1))
    rec.run(JOBS)
    row = table.get_entity(JOB, "r1")
    assert row[Col.STATE] == "queued" and row[Col.RETRIES] == 1


def test_after_the_first_run_rows_are_point_read_never_scanned(env):
    table, tasks, transport = env["table"], env["tasks"], env["transport"]
    rec = env["make"]()
    submit_row(table, "seed", "seed.mp4")
    tasks.put(running("seed", T0))
    rec.run(JOBS)  # watermark set
    for i in range(200):
        submit_row(table, f"p{i:03d}", f"p{i}.mp4")
        tasks.put(running(f"p{i:03d}", T0 + timedelta(seconds=1, milliseconds=i)))
    mark = transport.mark()
    result = rec.run(JOBS)
    gets = [r for r in transport.since(mark) if r[1] == "GET"]
    point = [g for g in gets if f"PartitionKey='{JOB}',RowKey=" in g[2]]
    assert result.updated == 200 and len(point) == 200  # "seed" is known to this process: no read
    assert len(gets) - len(point) == 1  # the watermark read; no partition scan


def test_a_task_listed_twice_while_paging_is_written_once_with_its_latest_state(env):
    table, tasks = env["table"], env["tasks"]
    submit_row(table, "dup", "dup.mp4")
    early, late = running("dup", T0), succeeded("dup", T0 + timedelta(seconds=9), start=T0)

    class Twice(FakeTasks):
        def task_change_pages(self, job_id, since, token=None):
            yield [early, late], None

    rec = Reconciler(tasks=Twice(), ledger=Ledger(table, JOB), overlap=timedelta(seconds=60), failure_log=None,
                     output_url=None, clock=env["clock"])
    result = rec.run(JOBS)
    assert result.complete and result.updated == 1 and result.transactions == 1
    assert table.get_entity(JOB, "dup")[Col.STATE] == "succeeded"


def test_out_of_time_the_listing_resumes_next_run_where_it_stopped(env):
    table, tasks, clock = env["table"], env["tasks"], env["clock"]
    tasks.page_size = 2
    for i in range(5):
        submit_row(table, f"p{i}", f"p{i}.mp4")
        tasks.put(succeeded(f"p{i}", T0 + timedelta(seconds=i), start=T0))
    rec = env["make"]()
    first = rec.run(JOBS, time_left=lambda: 0.0)  # one page, then out of time
    assert first.listed == 2 and not first.listing_complete and first.watermark_after is None
    saved = table.get_entity(STATUS_PARTITION, WATERMARK_ROW)
    assert saved[Col.LISTING_JOB] == JOBS[0] and saved[Col.LISTING_TOKEN] == "2"
    second = rec.run(JOBS, time_left=lambda: 0.0)
    assert second.listed == 2 and not second.listing_complete
    third = rec.run(JOBS)
    assert third.listed == 1 and third.listing_complete and third.listed_jobs == set(JOBS)
    assert all(table.get_entity(JOB, f"p{i}")[Col.STATE] == "succeeded" for i in range(5))
    # The watermark moves once, at the end, to the newest transition seen (before the listing began).
    assert third.watermark_after == T0 + timedelta(seconds=4)
    assert Col.LISTING_STARTED not in table.get_entity(STATUS_PARTITION, WATERMARK_ROW)
    assert tasks.list_calls == [None]  # one listing, started once and resumed twice from its token


def test_the_watermark_never_passes_the_start_of_a_listing_spread_over_runs(env):
    """A task that changes in a job already listed while the listing goes on must be in the next window."""
    table, tasks, clock = env["table"], env["tasks"], env["clock"]
    tasks.page_size = 1
    clock.now = T0 + timedelta(minutes=1)
    for i in range(2):
        submit_row(table, f"w{i}", f"w{i}.mp4")
        tasks.put(running(f"w{i}", T0 + timedelta(seconds=i)))
    rec = env["make"](overlap=timedelta(seconds=0))
    rec.run(JOBS, time_left=lambda: 0.0)
    clock.now = T0 + timedelta(minutes=10)
    tasks.put(running("late", T0 + timedelta(minutes=9)), Origin("late", "late.mp4", "input", "0x9", "late.mp3", T0))
    done = rec.run(JOBS)
    assert done.listing_complete and done.watermark_after == T0 + timedelta(minutes=1)  # the listing's start
