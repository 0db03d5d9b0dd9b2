"""Upload -> trigger -> Batch task -> MP3, on real Azurite and the Batch emulator.

The function is driven through its trigger entry point (`function_app.process_upload` with a
real `BlobClient`, as the SDK-type binding passes it); the emulator runs each task's command line
as a local subprocess with the pinned ffmpeg on PATH, downloading/uploading through Azurite.
The pool is pre-created with fixed nodes (as infrastructure would) so tasks run at once; waking an
autoscaled pool is the timer's job (issue 5). One test lets the app create its own autoscaled pool.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from azure.batch import BatchClient
from azure.batch import models as batch_models
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient
from azure.storage.blob import BlobClient, BlobServiceClient

import function_app
from devstack import media
from shared import naming, pool_spec, runtime
from shared.batch_types import AddOutcome, BatchUnavailable, PoolNotProvisioned
from shared.ledger import State
from shared.runtime import Service, build_service
from shared.settings import Settings
from tests.app.stack import CountingTransport, local_settings, make_two_track_clip, probe, unique, wait_for

import tests.fixtures.batch_emulator as _emulator_plugin  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    # Until the emulator's fixture lands these tests cannot run; never a silent pass after that.
    pytest.mark.skipif(not hasattr(_emulator_plugin, "batch_emulator_module"), reason="batch_emulator fixture not available"),
]
TASK_TIMEOUT = 90.0


@dataclass
class Stack:
    settings: Settings
    service: Service
    transport: CountingTransport
    blob_transport: CountingTransport
    batch: BatchClient
    blobs: BlobServiceClient
    table: TableClient
    connection_string: str
    batch_port: str
    emulator: Any  # tests.fixtures.batch_emulator.BatchEmulator

    @property
    def emulator_data_dir(self) -> Path | None:
        return self.emulator.data_dir

    def upload(self, name: str, data: bytes) -> None:
        self.blobs.get_blob_client(self.settings.input_container, name).upload_blob(data, overwrite=True)

    def trigger(self, name: str):
        """What the host does: bind a BlobClient for the blob and call the function."""
        runtime.set_service(self.service)
        client = BlobClient.from_connection_string(self.connection_string, self.settings.input_container, name,
                                                   transport=self.blob_transport)
        function_app.process_upload(client)
        etag = _etag_or_none(client)
        return naming.task_id(name, etag or "")

    def job_of(self, task_id: str) -> str:
        """The job the app addressed the task to: its row says (no row: the current period's)."""
        try:
            return self.row(task_id)["JobId"]
        except ResourceNotFoundError:
            now = datetime.now(timezone.utc)
            return self.service.batch.jobs.job_for(now, now)

    def task(self, task_id: str) -> batch_models.BatchTask:
        return self.batch.get_task(self.job_of(task_id), task_id)

    def wait_completed(self, task_id: str) -> batch_models.BatchTask:
        return wait_for(lambda: (t := self.task(task_id)).state == "completed" and t, TASK_TIMEOUT,
                        what=f"task {task_id} to complete")

    def row(self, row_key: str) -> dict:
        return self.table.get_entity(self.settings.job_id, row_key)

    def output(self, name: str) -> BlobClient:
        return self.blobs.get_blob_client(self.settings.output_container, name)

    def log_text(self, task_id: str, file: str = "ffmpeg.log") -> str:
        return self.blobs.get_blob_client(self.settings.logs_container, f"{task_id}/{file}") \
            .download_blob().readall().decode("utf-8", "replace")


def _etag_or_none(client: BlobClient) -> str | None:
    try:
        return client.get_blob_properties().etag
    except ResourceNotFoundError:
        return None


def _fixed_pool(settings: Settings, nodes: int) -> batch_models.BatchPoolCreateOptions:
    """The app's pool spec with a fixed size instead of autoscale (what IaC might deploy)."""
    spec = pool_spec.build_pool(settings)
    return batch_models.BatchPoolCreateOptions(
        id=spec.id, vm_size=spec.vm_size, virtual_machine_configuration=spec.virtual_machine_configuration,
        task_slots_per_node=spec.task_slots_per_node, task_scheduling_policy=spec.task_scheduling_policy,
        start_task=spec.start_task, target_dedicated_nodes=nodes)


def _make_stack(connection_string: str, emulator, *, nodes: int | None, **overrides: str) -> Stack:
    settings = local_settings(
        connection_string, batch_url=emulator.url, batch_account=emulator.account_name,
        batch_key=emulator.account_key,
        INPUT_CONTAINER=unique("in-"), OUTPUT_CONTAINER=unique("out-"), LOGS_CONTAINER=unique("logs-"),
        LEDGER_TABLE=unique("ledger"), BATCH_POOL_ID=unique("pool-"), BATCH_JOB_ID=unique("job-"), **overrides)
    batch = BatchClient(emulator.url, AzureNamedKeyCredential(emulator.account_name, emulator.account_key))
    if nodes is not None:
        batch.create_pool(_fixed_pool(settings, nodes))
    blobs = BlobServiceClient.from_connection_string(connection_string)
    blobs.create_container(settings.input_container)
    transport = CountingTransport()
    service = build_service(settings, {"transport": transport})
    table = TableClient.from_connection_string(connection_string, table_name=settings.ledger_table)
    return Stack(settings, service, transport, CountingTransport(), batch, blobs, table, connection_string,
                 emulator.url.rsplit(":", 1)[-1].split("/")[0], emulator)


def _teardown(stack: Stack) -> None:
    """Close clients; the module's emulator (and with it every pool and job here) goes at module end.
    Keep-alive connections left open would hold up the emulator's shutdown."""
    runtime.set_service(None)
    stack.service.clients.batch.close()
    stack.batch.close()
    stack.transport.close()


@pytest.fixture(scope="module")
def stack(storage_connection_string, batch_emulator_module):
    s = _make_stack(storage_connection_string, batch_emulator_module, nodes=2)
    yield s
    _teardown(s)


# --- the happy path --------------------------------------------------------------------------

def test_upload_becomes_mp3_with_metadata_and_ledger_row(stack, clip_dir, tmp_path):
    clip = media.make_clip(clip_dir / "three-seconds.mp4", seconds=3.0)
    name = "shows/Season 1/Clip.MP4"
    stack.upload(name, clip.read_bytes())
    task_id = stack.trigger(name)

    row = stack.row(task_id)
    assert row["State"] == State.QUEUED.value and row["TaskId"] == task_id
    assert row["InputName"] == name and row["OutputName"] == "shows/Season 1/Clip.mp3"
    assert row["InputSize"].value == clip.stat().st_size and row["JobId"].startswith(f"{stack.settings.job_id}-")

    task = stack.wait_completed(task_id)
    assert task.execution_info.result == "success", task.execution_info
    # The app's start task ran on that node and was a harmless no-op (ffmpeg already on PATH).
    node = stack.batch.get_node(stack.settings.pool_id, task.node_info.node_id)
    assert node.start_task_info is not None and node.start_task_info.exit_code == 0
    assert "command -v ffmpeg" in node.start_task.command_line
    out = stack.output("shows/Season 1/Clip.mp3")
    props = out.get_blob_properties()
    assert props.content_settings.content_type == "audio/mpeg"
    etag = stack.blobs.get_blob_client(stack.settings.input_container, name).get_blob_properties().etag
    assert props.metadata == {"source_name": "shows/Season%201/Clip.MP4", "source_container":
                              stack.settings.input_container, "source_etag": etag, "batch_task_id": task_id,
                              # the options it was made with (none set on the upload: the app's MP3_QUALITY)
                              "mp3_quality": str(stack.settings.mp3_quality), "mp3_loudnorm": "false"}
    mp3 = tmp_path / "out.mp3"
    mp3.write_bytes(out.download_blob().readall())
    duration, audio = probe(mp3)
    assert abs(duration - 3.0) < 0.25 and "mp3" in audio
    # Success uploads no logs.
    assert list(stack.blobs.get_container_client(stack.settings.logs_container).list_blobs(
        name_starts_with=task_id)) == []


def test_duplicate_trigger_is_one_task_and_reupload_is_another(stack, stereo_clip):
    name = "dup/clip.mp4"
    stack.upload(name, stereo_clip.read_bytes())
    first = stack.trigger(name)
    again = stack.trigger(name)
    assert first == again
    stack.wait_completed(first)
    stack.upload(name, stereo_clip.read_bytes() + b"\0")  # overwrite: new ETag, same name
    second = stack.trigger(name)
    assert second != first
    stack.wait_completed(second)
    jobs = {stack.job_of(first), stack.job_of(second)}
    ids = [t.id for job in jobs for t in stack.batch.list_tasks(job) if t.id.startswith("dup_clip-")]
    assert sorted(ids) == sorted([first, second])
    rows = list(stack.table.query_entities(
        f"PartitionKey eq '{stack.settings.job_id}' and RowKey ge 'dup_clip-' and RowKey lt 'dup_clip~'"))
    assert sorted(r["RowKey"] for r in rows) == sorted([first, second])


def test_hostile_names_produce_the_mp3_and_nothing_executes(stack, stereo_clip, tmp_path):
    marker = tmp_path / "pwned"
    names = [
        "$(touch pwned).mp4",
        f"$(touch {marker}).mp4",                 # an absolute marker we can check
        "a b/ü;rm -rf.mp4",
        "'\"`.mp4",
        "`touch pwned`;$(id)&&|<>*?~#!.mp4",
        ("n" * 500 + "/") + "z" * (1024 - 501 - 4) + ".mp4",  # exactly 1,024 characters
    ]
    assert len(names[-1]) == 1024
    data = stereo_clip.read_bytes()
    task_ids = {}
    for name in names:
        stack.upload(name, data)
        task_ids[name] = stack.trigger(name)
    for name, task_id in task_ids.items():
        task = stack.wait_completed(task_id)
        assert task.execution_info.result == "success", (name, task.execution_info.failure_info)
        assert name not in task.command_line
        out = stack.output(name[:-4] + ".mp3").get_blob_properties()
        assert unquote(out.metadata["source_name"]) == name
        assert stack.row(task_id)["InputName"] == name
    assert not marker.exists()
    assert not (Path.cwd() / "pwned").exists()
    # Task working directories live under the emulator's data directory: no `pwned` there either.
    assert stack.emulator_data_dir is not None and stack.emulator_data_dir.exists()
    assert list(stack.emulator_data_dir.rglob("pwned")) == []
    assert list(stack.emulator_data_dir.rglob("input.mp4"))  # ... where the inputs did land


# --- bad input -------------------------------------------------------------------------------

def test_zero_byte_and_non_mp4_are_recorded_not_submitted(stack):
    stack.upload("empty.mp4", b"")
    stack.upload("notes/readme.txt", b"hello")
    empty = stack.trigger("empty.mp4")
    text = stack.trigger("notes/readme.txt")
    assert stack.row(empty)["State"] == "rejected" and stack.row(empty)["Reason"] == "zero-byte blob"
    assert stack.row(text)["State"] == "skipped" and stack.row(text)["Reason"] == "not an .mp4 file"
    for task_id in (empty, text):
        with pytest.raises(ResourceNotFoundError):
            stack.task(task_id)


def test_blob_gone_at_trigger_time_is_skipped(stack):
    row_key = stack.trigger("never/there.mp4")
    row = stack.row(row_key)
    assert row["State"] == "skipped" and row["Reason"] == "blob no longer exists"
    with pytest.raises(ResourceNotFoundError):
        stack.task(row_key)


@pytest.mark.parametrize("kind,expected_log", [
    ("corrupt", "Invalid data"),
    ("no_audio", "matches no streams"),
])
def test_unconvertible_mp4_fails_with_ffmpeg_log_and_no_output(stack, clip_dir, silent_clip, kind, expected_log):
    path = media.make_corrupt(clip_dir / "corrupt.mp4") if kind == "corrupt" else silent_clip
    name = f"bad/{kind}.mp4"
    stack.upload(name, path.read_bytes())
    task_id = stack.trigger(name)
    task = stack.wait_completed(task_id)
    info = task.execution_info
    assert info.result == "failure" and info.exit_code not in (0, None)
    assert info.retry_count == stack.settings.task_max_retries  # bounded: no retry storm
    assert expected_log in stack.log_text(task_id)
    with pytest.raises(ResourceNotFoundError):
        stack.output(f"bad/{kind}.mp3").get_blob_properties()


def test_several_audio_streams_use_the_first(stack, clip_dir, tmp_path):
    clip = make_two_track_clip(clip_dir / "two-tracks.mp4", first_seconds=1.5, second_seconds=3.0)
    stack.upload("two tracks.mp4", clip.read_bytes())
    task_id = stack.trigger("two tracks.mp4")
    assert stack.wait_completed(task_id).execution_info.result == "success"
    mp3 = tmp_path / "two.mp3"
    mp3.write_bytes(stack.output("two tracks.mp3").download_blob().readall())
    duration, audio = probe(mp3)
    assert "mono" in audio and abs(duration - 1.5) < 0.25  # track 0: mono, 1.5 s (track 1 is stereo, 3 s)


def test_bad_inputs_disturb_nothing_else(stack):
    # Runs after the cases above (module order): only the MP3s of convertible inputs exist.
    outputs = {b.name for b in stack.blobs.get_container_client(stack.settings.output_container).list_blobs()}
    assert not any(n.startswith(("bad/", "empty", "notes/", "never/")) for n in outputs)
    assert "shows/Season 1/Clip.mp3" in outputs and "two tracks.mp3" in outputs


# --- calls per upload ---------------------------------------------------------------------------

def test_steady_state_upload_costs_one_batch_call_and_one_table_write(stack, stereo_clip):
    stack.upload("warm.mp4", stereo_clip.read_bytes())
    stack.trigger("warm.mp4")                       # the process is warm after earlier tests anyway
    stack.upload("steady.mp4", stereo_clip.read_bytes())
    app_mark, blob_mark = stack.transport.mark(), stack.blob_transport.mark()
    served_before = stack.emulator.stats()
    runtime.set_service(stack.service)
    function_app.process_upload(BlobClient.from_connection_string(
        stack.connection_string, stack.settings.input_container, "steady.mp4", transport=stack.blob_transport))
    served_after = stack.emulator.stats()
    app_calls = stack.transport.since(app_mark)
    blob_calls = stack.blob_transport.since(blob_mark)
    batch_calls = [c for c in app_calls if c[0].endswith(f":{stack.batch_port}")]
    table_calls = [c for c in app_calls if stack.settings.ledger_table in c[2]]
    [(_, method, path)] = batch_calls
    assert method == "POST" and path.startswith(f"/jobs/{stack.settings.job_id}-") and path.endswith("/tasks")
    # One range read of the name's rows (older versions in flight, another input with the same MP3), one insert.
    assert [m for _, m, _ in table_calls] == ["GET", "POST"]
    assert len(app_calls) == 3                      # nothing else: no pool/job/container checks
    assert [m for _, m, _ in blob_calls] == ["HEAD"]  # the binding's one Get Blob Properties
    # The emulator's own request count agrees: one Batch request was served, and it was an add-task.
    assert served_after["total"] - served_before["total"] == 1
    grown = {op for op, n in served_after["operations"].items() if n != served_before["operations"].get(op, 0)}
    assert len(grown) == 1 and "task" in grown.pop().lower()


def test_cold_start_adds_pool_job_and_container_checks_once(storage_connection_string, batch_emulator_module,
                                                            stereo_clip):
    s = _make_stack(storage_connection_string, batch_emulator_module, nodes=1)
    try:
        for name in ("cold-1.mp4", "cold-2.mp4"):
            s.upload(name, stereo_clip.read_bytes())
        s.trigger("cold-1.mp4")
        cold = [(m, p) for _, m, p in s.transport.requests]
        mark = s.transport.mark()
        s.trigger("cold-2.mp4")
        warm = [(m, p) for _, m, p in s.transport.since(mark)]
        acct, st = "/devstoreaccount1", s.settings
        job = s.row(naming.task_id("cold-1.mp4", s.blobs.get_blob_client(st.input_container, "cold-1.mp4")
                                   .get_blob_properties().etag))["JobId"]
        assert cold == [
            ("PUT", f"{acct}/{st.output_container}"), ("PUT", f"{acct}/{st.logs_container}"),  # once per process
            ("GET", f"{acct}/{st.ledger_table}()"),    # the name's rows (none: no table yet reads as empty)
            ("POST", "/pools"),                        # PoolExists: success, cached
            ("POST", "/jobs"),                         # created once, cached
            ("POST", f"/jobs/{job}/tasks"),            # the period's job (shared/job_periods.py)
            ("POST", f"{acct}/{st.ledger_table}"),     # TableNotFound on a fresh account ...
            ("POST", f"{acct}/Tables"),                # ... so the table is created once
            ("POST", f"{acct}/{st.ledger_table}"),
        ]
        assert warm == [("GET", f"{acct}/{st.ledger_table}()"), ("POST", f"/jobs/{job}/tasks"),
                        ("POST", f"{acct}/{st.ledger_table}")]
    finally:
        _teardown(s)


# --- deleted before it ran; app-created pool; pool identity ----------------------------------------

def test_blob_deleted_before_its_task_runs_fails_cleanly(storage_connection_string, batch_emulator_module, stereo_clip):
    s = _make_stack(storage_connection_string, batch_emulator_module, nodes=0)
    try:
        s.upload("vanishing.mp4", stereo_clip.read_bytes())
        task_id = s.trigger("vanishing.mp4")
        assert s.task(task_id).state == "active"      # no nodes yet
        s.blobs.get_blob_client(s.settings.input_container, "vanishing.mp4").delete_blob()
        s.batch.begin_resize_pool(s.settings.pool_id, batch_models.BatchPoolResizeOptions(
            target_dedicated_nodes=1)).result()
        task = s.wait_completed(task_id)
        info = task.execution_info
        assert info.result == "failure" and info.failure_info is not None
        assert info.failure_info.category == "usererror"
        assert s.row(task_id)["State"] == "queued"     # the reconciler (issue 5) records the failure
        with pytest.raises(ResourceNotFoundError):
            s.output("vanishing.mp3").get_blob_properties()
    finally:
        _teardown(s)


def test_app_creates_an_autoscaled_pool_from_zero(storage_connection_string, batch_emulator_module, stereo_clip):
    s = _make_stack(storage_connection_string, batch_emulator_module, nodes=None)
    try:
        s.upload("first.mp4", stereo_clip.read_bytes())
        task_id = s.trigger("first.mp4")
        pool = s.batch.get_pool(s.settings.pool_id)
        assert pool.enable_auto_scale and "$PendingTasks" in pool.auto_scale_formula
        assert pool.task_slots_per_node == s.settings.task_slots_per_node
        assert pool.virtual_machine_configuration.node_agent_sku_id == "batch.node.ubuntu 24.04"
        if pool.auto_scale_run is not None:
            assert pool.auto_scale_run.error is None, pool.auto_scale_run.error
        job = s.batch.get_job(s.job_of(task_id))
        assert job.pool_info.pool_id == s.settings.pool_id
        assert s.task(task_id).state in ("active", "running", "completed")
    finally:
        _teardown(s)


def test_pool_identity_mode_uses_no_sas(storage_connection_string, batch_emulator_module, stereo_clip):
    identity = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/pool"
    s = _make_stack(storage_connection_string, batch_emulator_module, nodes=1, POOL_IDENTITY_RESOURCE_ID=identity)
    try:
        s.upload("id/clip.mp4", stereo_clip.read_bytes())
        task_id = s.trigger("id/clip.mp4")
        task = s.wait_completed(task_id)
        assert task.execution_info.result == "success", task.execution_info.failure_info
        assert "?" not in task.resource_files[0].http_url
        assert task.resource_files[0].identity_reference.resource_id == identity
        assert s.output("id/clip.mp3").get_blob_properties().size > 0
    finally:
        _teardown(s)


def test_pool_identity_mode_without_the_pool_fails_loudly(storage_connection_string, batch_emulator_module, stereo_clip):
    s = _make_stack(storage_connection_string, batch_emulator_module, nodes=None, POOL_IDENTITY_RESOURCE_ID="/x/uami")
    try:
        s.upload("a.mp4", stereo_clip.read_bytes())
        with pytest.raises(PoolNotProvisioned, match="infrastructure"):
            s.trigger("a.mp4")
        with pytest.raises(ResourceNotFoundError):
            s.batch.get_pool(s.settings.pool_id)       # the app never made an identity-less pool
    finally:
        _teardown(s)


def test_outcome_of_the_handler_for_a_duplicate(stack, stereo_clip):
    stack.upload("outcome.mp4", stereo_clip.read_bytes())
    runtime.set_service(stack.service)
    from shared.handlers import on_blob
    client = BlobClient.from_connection_string(stack.connection_string, stack.settings.input_container, "outcome.mp4")
    first, second = on_blob(client), on_blob(client)
    assert (first.task, first.ledger_written) == (AddOutcome.CREATED, True)
    assert (second.task, second.ledger_written) == (AddOutcome.ALREADY_EXISTS, False)


def test_throttling_is_retried_by_the_sdk_and_an_outage_fails_the_invocation(stack, stereo_clip):
    """Retries belong to the pipeline: two 503s are absorbed; a longer outage raises (the host
    retries the invocation) without a ledger row, and the retry after recovery submits once."""
    stack.upload("throttled.mp4", stereo_clip.read_bytes())
    # The app's retry policy (4 retries, exponential backoff) with a test-sized backoff factor.
    fast = build_service(stack.settings, {"transport": stack.transport, "retry_backoff_factor": 0.01})
    stack = dataclasses.replace(stack, service=fast)
    stack.emulator.set_faults(status=503, retryAfter=0, operations=["Task_Add"], count=2)
    try:
        mark = stack.transport.mark()
        task_id = stack.trigger("throttled.mp4")
        adds = [c for c in stack.transport.since(mark) if c[2].endswith("/tasks")]
        assert len(adds) == 3 and stack.row(task_id)["State"] == "queued"

        stack.upload("outage.mp4", stereo_clip.read_bytes())
        stack.emulator.set_faults(status=503, retryAfter=0, operations=["Task_Add"], count=50)
        with pytest.raises(BatchUnavailable):
            stack.trigger("outage.mp4")
        etag = stack.blobs.get_blob_client(stack.settings.input_container, "outage.mp4").get_blob_properties().etag
        outage_id = naming.task_id("outage.mp4", etag)
        with pytest.raises(ResourceNotFoundError):
            stack.row(outage_id)
    finally:
        stack.emulator.set_faults(count=0, rate=0)
    try:
        assert stack.trigger("outage.mp4") == outage_id     # the host's retry
        assert stack.wait_completed(outage_id).execution_info.result == "success"
    finally:
        fast.clients.batch.close()
