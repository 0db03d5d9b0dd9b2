"""The timer on real Azurite + the Batch emulator: ledger states, failure reasons, watermark, scale to
zero and wake, the upload/scale-to-zero race, adoption, the missed-upload sweep, drained period jobs deleted.

The app builds its own autoscaled pool (as in production) on the first upload; each test has its own
emulator (short node start delay), containers, table, pool and job. Ticks are called directly
(`TimerService.tick`, what the timer function delegates to) with short grace/hold periods.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.batch import models as batch_models
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient
from azure.storage.blob import BlobServiceClient

from devstack import media
from shared import handlers, naming, pool_spec, runtime
from shared.ledger import STATUS_PARTITION, Col, State
from shared.ledger import WATERMARK_ROW
from shared.runtime import Service, build_service
from shared.scaling import RemoveNodes, Resize
from shared.settings import Settings
from shared.ledger import SUMMARY_ROW
from shared.task_spec import TaskRequest, build_task
from shared.runtime import build_timer_service
from shared.tick import TimerService
from shared.settings import TimerSettings
from tests.app.stack import CountingTransport, local_settings, unique, wait_for

pytestmark = pytest.mark.integration

FAST = TimerSettings(
    idle_grace=timedelta(seconds=1), autoscale_handback=timedelta(seconds=1),
    reconcile_overlap=timedelta(seconds=5), sweep_interval=timedelta(days=1), sweep_min_age=timedelta(0),
    completed_task_retention=timedelta(days=1), status_heartbeat=timedelta(hours=1), sweep_page_size=5000,
    sweep_pages_per_tick=2, tick_budget=timedelta(seconds=120), reconcile_budget=timedelta(seconds=30))


@dataclass
class TimerStack:
    settings: Settings
    service: Service
    timer: TimerService
    transport: CountingTransport
    batch: BatchClient
    blobs: BlobServiceClient
    table: TableClient
    connection_string: str
    emulator: object

    @property
    def table_host(self) -> str:
        return self.table.url.split("//", 1)[1].split("/", 1)[0]

    def upload(self, name: str, data: bytes) -> None:
        self.blobs.get_blob_client(self.settings.input_container, name).upload_blob(data, overwrite=True)

    def trigger(self, name: str) -> str:
        runtime.set_service(self.service)
        client = self.blobs.get_blob_client(self.settings.input_container, name)
        etag = client.get_blob_properties().etag
        handlers.on_blob(client)
        return naming.task_id(name, etag)

    def tick(self):
        return self.timer.tick()

    def row(self, row_key: str) -> dict:
        return self.table.get_entity(self.settings.job_id, row_key)

    def status(self) -> dict:
        return self.table.get_entity(STATUS_PARTITION, SUMMARY_ROW)

    def pool(self):
        return self.batch.get_pool(self.settings.pool_id)

    def tick_until(self, predicate, timeout: float = 60.0, what: str = "condition", every: float = 0.2):
        deadline = time.monotonic() + timeout
        while True:
            report = self.tick()
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; last tick {report}")
            time.sleep(every)

    def table_writes(self, mark: int) -> list:
        return [r for r in self.transport.since(mark) if r[0] == self.table_host and r[1] != "GET"]


def make_stack(connection_string, emulator, timer_settings: TimerSettings = FAST, **overrides) -> TimerStack:
    settings = local_settings(
        connection_string, batch_url=emulator.url, batch_account=emulator.account_name,
        batch_key=emulator.account_key,
        INPUT_CONTAINER=unique("in-"), OUTPUT_CONTAINER=unique("out-"), LOGS_CONTAINER=unique("logs-"),
        LEDGER_TABLE=unique("ledger"), BATCH_POOL_ID=unique("pool-"), BATCH_JOB_ID=unique("job-"),
        POOL_MAX_NODES="2", POOL_TASK_SLOTS_PER_NODE="1", **overrides)
    blobs = BlobServiceClient.from_connection_string(connection_string)
    blobs.create_container(settings.input_container)
    transport = CountingTransport()
    service = build_service(settings, {"transport": transport})
    timer = build_timer_service(service, timer_settings, sleep=lambda s: time.sleep(min(s, 0.2)))
    # The emulator's enableautoscale gap is shortened to match the short hand-back in these tests.
    timer.policy = replace(timer.policy, enable_autoscale_gap=emulator.config.enable_autoscale_min_gap)
    batch = BatchClient(emulator.url, AzureNamedKeyCredential(emulator.account_name, emulator.account_key))
    table = TableClient.from_connection_string(connection_string, table_name=settings.ledger_table)
    return TimerStack(settings, service, timer, transport, batch, blobs, table, connection_string, emulator)


@pytest.fixture
def emulator(batch_emulator_factory):
    return batch_emulator_factory(enable_autoscale_min_gap=timedelta(seconds=1), node_start_delay=0.3)


@pytest.fixture
def stack(storage_connection_string, emulator):
    s = make_stack(storage_connection_string, emulator)
    yield s
    runtime.set_service(None)
    s.service.clients.batch.close()
    s.batch.close()


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    # Audio-only and long enough (~1-2 s of ffmpeg) for a tick to see the task running.
    return media.make_clip(tmp_path_factory.mktemp("long") / "long.mp4", seconds=240.0, video=False)


def _parked(stack: TimerStack) -> bool:
    pool = stack.pool()
    return (pool.current_dedicated_nodes == 0 and pool.target_dedicated_nodes in (0, None)
            and pool.allocation_state == "steady" and pool.enable_auto_scale)


def test_upload_is_queued_running_succeeded_and_pool_wakes_then_parks(stack, long_clip):
    stack.upload("shows/long clip.mp4", long_clip.read_bytes())
    task_id = stack.trigger("shows/long clip.mp4")
    assert stack.row(task_id)[Col.STATE] == "queued"
    pool = stack.pool()
    assert pool.enable_auto_scale and (pool.target_dedicated_nodes or 0) == 0  # autoscale alone: 0 for now

    # One tick wakes the zero-node pool (the formula would wait for its next evaluation).
    report = stack.tick()
    assert [a.kind for a in report.scaling.executed] == ["disable_autoscale", "resize"]
    assert stack.pool().target_dedicated_nodes == 1
    wait_for(lambda: stack.pool().current_dedicated_nodes == 1, 10, what="node allocated")

    seen = [stack.row(task_id)[Col.STATE]]

    def done():
        state = stack.row(task_id)[Col.STATE]
        if state != seen[-1]:
            seen.append(state)
        return state in ("succeeded", "failed")

    stack.tick_until(done, 90, "the task to finish", every=0.1)
    assert seen == ["queued", "running", "succeeded"], seen
    row = stack.row(task_id)
    assert row[Col.EXIT_CODE] == 0 and row[Col.NODE_ID] and row[Col.DURATION_SECONDS] > 0
    assert row[Col.OUTPUT_URL].endswith(f"/{stack.settings.output_container}/shows/long%20clip.mp3")
    assert "?" not in row[Col.OUTPUT_URL]

    # Idle: grace (1 s) -> disable + resize to 0 -> hold (1 s) -> autoscale back on, at rest on zero nodes.
    stack.tick_until(lambda: _parked(stack), 30, "the pool to park at zero with autoscale on")
    status = stack.status()
    assert status["PoolCurrentNodes"] == 0 and status["PoolAutoscaleEnabled"] is True
    assert status["LedgerSucceeded"] == 1 and status["TasksActive"] == 0
    assert "scale_to_zero" in status["LastActions"] or "hand_back" in status["LastDecision"] \
        or status["LastActions"] == "enable_autoscale"


def test_quiet_tick_writes_nothing_and_costs_a_handful_of_calls(stack, long_clip):
    stack.upload("q.mp4", long_clip.read_bytes())
    task_id = stack.trigger("q.mp4")
    stack.tick_until(lambda: stack.row(task_id)[Col.STATE] == "succeeded", 90, "success")
    stack.tick_until(lambda: _parked(stack), 30, "parked")
    watermark = stack.table.get_entity(STATUS_PARTITION, WATERMARK_ROW)[Col.WATERMARK]
    assert watermark >= stack.row(task_id)[Col.TASK_STATE_TIME]
    stack.tick()  # settles the status row after parking

    before = stack.emulator.stats()["operations"]
    mark = stack.transport.mark()
    report = stack.tick()
    after = stack.emulator.stats()["operations"]
    batch_calls = {op: after.get(op, 0) - before.get(op, 0) for op in after if after.get(op, 0) != before.get(op, 0)}
    assert stack.table_writes(mark) == [], stack.table_writes(mark)
    assert not report.status_written and report.reconcile.transactions == 0
    assert sum(batch_calls.values()) <= 4, batch_calls
    table_reads = [r for r in stack.transport.since(mark) if r[0] == stack.table_host]
    # status + watermark + the completion events' outbox page (+ nothing for cached rows)
    assert len(table_reads) <= 4, table_reads


def test_failures_carry_ffmpeg_reason(stack, silent_clip, tmp_path):
    corrupt = media.make_corrupt(tmp_path / "corrupt.mp4")
    stack.upload("bad/corrupt.mp4", corrupt.read_bytes())
    stack.upload("bad/silent.mp4", silent_clip.read_bytes())
    corrupt_id = stack.trigger("bad/corrupt.mp4")
    silent_id = stack.trigger("bad/silent.mp4")
    stack.tick_until(lambda: all(stack.row(t)[Col.STATE] == "failed" for t in (corrupt_id, silent_id)), 90,
                     "both to fail")
    silent = stack.row(silent_id)
    assert "matches no streams" in silent[Col.FFMPEG_ERROR] and silent[Col.REASON] == silent[Col.FFMPEG_ERROR]
    assert silent[Col.FAILURE_CATEGORY] == "usererror" and silent[Col.EXIT_CODE] != 0
    assert silent[Col.RETRIES] == stack.settings.task_max_retries
    corrupt_row = stack.row(corrupt_id)
    assert "Invalid data" in corrupt_row[Col.FFMPEG_ERROR] or "moov" in corrupt_row[Col.FFMPEG_ERROR], corrupt_row
    stack.tick()
    assert stack.status()["LedgerFailed"] == 2


def test_upload_racing_scale_to_zero_is_never_stranded(stack, stereo_clip):
    stack.upload("warm.mp4", stereo_clip.read_bytes())
    warm = stack.trigger("warm.mp4")
    stack.tick_until(lambda: stack.row(warm)[Col.STATE] == "succeeded", 60, "warm-up task")
    for round_no in range(3):
        # Idle past grace: tick until one takes the pool to zero; the upload lands right behind that tick.
        deadline = time.monotonic() + 20
        while not any(isinstance(a, Resize) and a.target == 0 for a in stack.tick().scaling.executed):
            assert time.monotonic() < deadline, "no scale-to-zero"
            time.sleep(0.2)
        name = f"race-{round_no}.mp4"
        stack.upload(name, stereo_clip.read_bytes())
        task_id = stack.trigger(name)
        report = stack.tick()  # the next tick sees the task and wakes the pool (stopping the shrink if needed)
        assert stack.pool().target_dedicated_nodes >= 1, [d.reason for d in report.scaling.decisions]
        stack.tick_until(lambda: stack.row(task_id)[Col.STATE] == "succeeded", 60, f"{name} to succeed")


def test_task_without_ledger_row_is_adopted(stack, stereo_clip):
    name = "earlier deployment/clip.mp4"
    stack.upload(name, stereo_clip.read_bytes())
    etag = stack.blobs.get_blob_client(stack.settings.input_container, name).get_blob_properties().etag
    task_id = naming.task_id(name, etag)
    stack.service.ensure_output_containers()
    request = TaskRequest(task_id=task_id, input_container=stack.settings.input_container, input_name=name,
                          input_etag=etag, output_name=naming.output_name(name))
    job_id = f"{stack.settings.job_id}-20000101-000000"  # a job the app did not create this run (an old period)
    stack.service.batch.add_task(build_task(request, stack.service.access.for_blob(
        stack.settings.input_container, name), stack.service.submitter._limits), job_id)
    with pytest.raises(ResourceNotFoundError):
        stack.row(task_id)
    stack.tick_until(lambda: _state(stack, task_id) == "succeeded", 60, "adopted task to succeed")
    row = stack.row(task_id)
    assert row[Col.INPUT_NAME] == name and row[Col.INPUT_CONTAINER] == stack.settings.input_container
    assert row[Col.INPUT_ETAG] == naming.normalize_etag(etag) or row[Col.INPUT_ETAG] == etag
    assert row[Col.ADOPTED_AT] and row[Col.OUTPUT_NAME] == "earlier deployment/clip.mp3"
    assert row[Col.JOB_ID] == job_id


def test_blob_that_never_triggered_is_swept_in(storage_connection_string, emulator, stereo_clip):
    stack = make_stack(storage_connection_string, emulator, replace(FAST, sweep_interval=timedelta(seconds=1)))
    try:
        stack.upload("missed/one.mp4", stereo_clip.read_bytes())
        stack.upload("missed/notes.txt", b"not work")
        etag = stack.blobs.get_blob_client(stack.settings.input_container, "missed/one.mp4").get_blob_properties().etag
        task_id = naming.task_id("missed/one.mp4", etag)
        report = stack.tick()
        assert report.sweep is not None and report.sweep.submitted == 1, report.sweep
        assert stack.row(task_id)[Col.STATE] in ("queued", "running", "succeeded")
        stack.tick_until(lambda: stack.row(task_id)[Col.STATE] == "succeeded", 60, "swept blob to succeed")
        time.sleep(1.1)
        again = stack.tick()
        assert again.sweep is not None and again.sweep.missing == 0  # nothing swept twice
    finally:
        stack.service.clients.batch.close()
        stack.batch.close()


def test_a_drained_period_job_is_deleted_whole_and_its_rows_kept(storage_connection_string, emulator, stereo_clip):
    """Job rotation: tasks of a past period are removed by deleting their job (one call), once its tasks are done,
    reconcile has seen it quiet, and the retention is over; a later upload goes to its own period's job."""
    settings = replace(FAST, completed_task_retention=timedelta(0), reconcile_overlap=timedelta(seconds=1))
    stack = make_stack(storage_connection_string, emulator, settings, JOB_PERIOD_SECONDS="60")
    try:
        ids = []
        for i in range(3):
            stack.upload(f"clean/{i}.mp4", stereo_clip.read_bytes())
            ids.append(stack.trigger(f"clean/{i}.mp4"))
        stack.tick_until(lambda: all(stack.row(t)[Col.STATE] == "succeeded" for t in ids), 60, "all succeed")
        jobs = {stack.row(t)[Col.JOB_ID] for t in ids}
        assert all(job.startswith(f"{stack.settings.job_id}-") for job in jobs)
        mark = len(stack.transport.requests)
        stack.tick_until(lambda: not ({j.id for j in stack.batch.list_jobs()} & jobs), 150, "period jobs retired",
                         every=1.0)
        deletes = [r for r in stack.transport.since(mark) if r[1] == "DELETE" and "/jobs/" in r[2]]
        assert len(deletes) == len(jobs) and all("/tasks/" not in r[2] for r in deletes), deletes  # no per-task delete
        for task_id in ids:
            assert stack.row(task_id)[Col.STATE] == "succeeded"
        assert stack.status()["JobsRetired"]
        # Nothing was lost with the jobs: a new upload works, in the current period's job.
        stack.upload("clean/after.mp4", stereo_clip.read_bytes())
        after = stack.trigger("clean/after.mp4")
        stack.tick_until(lambda: stack.row(after)[Col.STATE] == "succeeded", 60, "upload after retirement")
    finally:
        stack.service.clients.batch.close()
        stack.batch.close()


def _state(stack: TimerStack, task_id: str) -> str | None:
    try:
        return stack.row(task_id)[Col.STATE]
    except ResourceNotFoundError:
        return None


def test_unusable_nodes_are_recorded_and_replaced_within_a_budget(storage_connection_string, emulator, stereo_clip):
    stack = make_stack(storage_connection_string, emulator)
    try:
        # The pool exists already (as infrastructure would create it) but its start task always fails.
        spec = pool_spec.build_pool(stack.settings)
        spec.start_task = batch_models.BatchStartTask(command_line="/bin/sh -c 'exit 7'", wait_for_success=True)
        stack.batch.create_pool(spec)
        stack.upload("u.mp4", stereo_clip.read_bytes())
        task_id = stack.trigger("u.mp4")
        removed: list = []

        def budget_spent():
            report = stack.tick()
            removed.extend(a for a in report.scaling.executed if isinstance(a, RemoveNodes))
            return "replacement_budget_spent" in (stack.status().get("LastDecision") or "")

        wait_for(budget_spent, 60, interval=0.2, what="replacement budget to be spent")
        status = stack.status()
        budget = 2 * stack.settings.max_nodes
        assert sum(len(a.node_ids) for a in removed) == budget
        assert "starttaskfailed" in status["PoolErrors"] and status["NodesUnusable"] >= 1
        assert stack.row(task_id)[Col.STATE] == "queued"  # nothing ran; the reason is on the status row
    finally:
        stack.service.clients.batch.close()
        stack.batch.close()


def test_node_seconds_follow_the_work(storage_connection_string, emulator, stereo_clip):
    """Billing on the emulator's meter: nothing while idle before, nodes only around the burst, zero after."""
    stack = make_stack(storage_connection_string, emulator)
    try:
        stack.upload("first.mp4", stereo_clip.read_bytes())  # creates the pool and job (autoscale, 0 nodes)
        first = stack.trigger("first.mp4")
        stack.tick_until(lambda: stack.row(first)[Col.STATE] == "succeeded", 60, "first file")
        stack.tick_until(lambda: _parked(stack), 30, "parked")
        emulator.admin("POST", "meter/reset")
        time.sleep(1.0)  # idle before the burst: a parked pool bills nothing
        assert _meter(stack)["dedicatedNodeSeconds"] == 0
        names = [f"burst/{i}.mp4" for i in range(6)]
        for name in names:
            stack.upload(name, stereo_clip.read_bytes())
        ids = [stack.trigger(name) for name in names]
        started = time.monotonic()
        stack.tick_until(lambda: all(stack.row(t)[Col.STATE] == "succeeded" for t in ids), 60, "burst", every=0.2)
        burst_seconds = time.monotonic() - started
        stack.tick_until(lambda: _parked(stack), 30, "parked after the burst")
        time.sleep(1.0)  # idle after
        meter = _meter(stack)
        billed, busy = meter["dedicatedNodeSeconds"], meter["busyNodeSeconds"]
        # At most max_nodes for the burst, plus per node: start-up, the idle grace, a hold and tick jitter.
        per_node_overhead = 0.3 + FAST.idle_grace.total_seconds() + FAST.autoscale_handback.total_seconds() + 1.0
        assert billed <= stack.settings.max_nodes * (burst_seconds + per_node_overhead), meter
        print(f"\nburst {burst_seconds:.1f} s: billed {billed:.1f} node-s, busy {busy:.1f} node-s")
        assert busy > 0 and meter["currentNodes"]["dedicated"] == 0
    finally:
        stack.service.clients.batch.close()
        stack.batch.close()


def _meter(stack: TimerStack) -> dict:
    return stack.emulator.meter()["pools"].get(stack.settings.pool_id) or {
        "dedicatedNodeSeconds": 0, "busyNodeSeconds": 0, "currentNodes": {"dedicated": 0}}
