"""shared.batch.AzureBatch (the timer side of Batch) against the emulator with the real azure-batch SDK: reads as
plain values, and the service's refusals surfacing as PoolActionRefused with their error codes."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from azure.batch import models as batch_models

from shared import batch as batch_module
from shared.batch import API_VERSION, AzureBatch
from shared.batch_types import PoolActionRefused
from shared.job_periods import JobPeriods
from shared.scaling import Allocation
from shared.settings import NodePriority
from tests.app.stack import unique, wait_for

pytestmark = pytest.mark.integration

FORMULA = "$TargetDedicatedNodes = 0; $NodeDeallocationOption = taskcompletion;"


@pytest.fixture
def emulator(batch_emulator_factory):
    return batch_emulator_factory(enable_autoscale_min_gap=timedelta(seconds=30), node_start_delay=0.1)


def _pool(client, pool_id: str, *, autoscale: bool, nodes: int = 0, start_fails: bool = False) -> None:
    start = batch_models.BatchStartTask(command_line="/bin/sh -c 'exit 3'", wait_for_success=True) \
        if start_fails else None
    client.create_pool(batch_models.BatchPoolCreateOptions(
        id=pool_id, vm_size="Standard_D2s_v5",
        virtual_machine_configuration=batch_models.VirtualMachineConfiguration(
            image_reference=batch_models.BatchVmImageReference(
                publisher="canonical", offer="ubuntu-24_04-lts", sku="server", version="latest"),
            node_agent_sku_id="batch.node.ubuntu 24.04"),
        enable_auto_scale=autoscale or None, auto_scale_formula=FORMULA if autoscale else None,
        auto_scale_evaluation_interval=timedelta(minutes=5) if autoscale else None,
        target_dedicated_nodes=None if autoscale else nodes, start_task=start))


def _monitor(client, pool_id: str, job_id: str, priority=NodePriority.DEDICATED) -> AzureBatch:
    return AzureBatch(client, pool_id=pool_id, jobs=JobPeriods(job_id, timedelta(hours=1)), priority=priority,
                      autoscale_formula=FORMULA,
                        autoscale_interval=timedelta(minutes=5))


def test_pool_view_and_refusals_carry_service_codes(emulator):
    client = emulator.client()
    pool_id = unique("p-")
    monitor = _monitor(client, pool_id, unique("j-"))
    assert monitor.get_pool() is None and monitor.task_counts([unique("j-")]) is None
    _pool(client, pool_id, autoscale=True)
    view = monitor.get_pool()
    assert view.snapshot.autoscale_enabled and view.snapshot.allocation is Allocation.STEADY
    with pytest.raises(PoolActionRefused) as refused:
        monitor.resize(1)  # resize while autoscale is on: 409
    assert refused.value.status == 409
    monitor.disable_autoscale()
    monitor.resize(2)
    view = monitor.get_pool()
    assert not view.snapshot.autoscale_enabled and view.snapshot.target_nodes == 2
    try:  # while the resize runs a second one is refused; the emulator may already be steady (fast nodes)
        monitor.resize(2)
    except PoolActionRefused as busy:
        assert busy.code == "PoolBeingResized"
    wait_for(lambda: monitor.get_pool().snapshot.allocation is Allocation.STEADY, 10, what="steady")
    monitor.enable_autoscale()  # evaluates at once: the formula's 0 shrinks the pool
    wait_for(lambda: monitor.get_pool().snapshot.allocation is Allocation.STEADY, 10, what="steady at 0")
    monitor.disable_autoscale()
    started = time.monotonic()
    with pytest.raises(PoolActionRefused) as gap:
        monitor.enable_autoscale()  # within the 30 s rule: refused fast, not retried by the pipeline
    assert gap.value.code == "TooManyEnableAutoScaleRequests" and time.monotonic() - started < 5


def test_stop_resize_and_spot_targets(emulator):
    client = emulator.client()
    pool_id = unique("p-")
    _pool(client, pool_id, autoscale=False, nodes=0)
    monitor = _monitor(client, pool_id, unique("j-"), NodePriority.SPOT)
    monitor.resize(3)
    pool = client.get_pool(pool_id)
    assert pool.target_low_priority_nodes == 3 and pool.target_dedicated_nodes == 0
    monitor.stop_resize()
    wait_for(lambda: monitor.get_pool().snapshot.allocation is Allocation.STEADY, 10, what="stopped")


def test_bad_nodes_are_listed_and_removable(emulator):
    client = emulator.client()
    pool_id = unique("p-")
    _pool(client, pool_id, autoscale=False, nodes=1, start_fails=True)
    monitor = _monitor(client, pool_id, unique("j-"))
    view, nodes = wait_for(lambda: (r := monitor.with_nodes(monitor.get_pool())) and r[0].snapshot.bad_node_ids and r,
                           20, what="start task failure")
    assert nodes[0].state == "starttaskfailed" and view.errors and view.errors[0].source == "node"
    monitor.remove_nodes(view.snapshot.bad_node_ids)
    wait_for(lambda: monitor.get_pool().snapshot.current_nodes == 0, 10, what="node removed")


def test_task_reads_filters_and_delete(emulator):
    client = emulator.client()
    pool_id, prefix = unique("p-"), unique("j-")
    monitor = _monitor(client, pool_id, prefix)
    job_id = monitor.jobs.job_for(datetime.now(timezone.utc), datetime.now(timezone.utc))
    _pool(client, pool_id, autoscale=False, nodes=1)
    client.create_job(batch_models.BatchJobCreateOptions(id=job_id, pool_info=batch_models.BatchPoolInfo(pool_id=pool_id)))
    client.create_job(batch_models.BatchJobCreateOptions(id=f"{prefix}x-other", pool_info=batch_models.BatchPoolInfo(
        pool_id=pool_id)))  # not ours: a name our periods do not make
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    client.create_task(job_id, batch_models.BatchTaskCreateOptions(
        id="t1", display_name="folder/a b.mp4", command_line="/bin/sh -c true",
        output_files=[batch_models.OutputFile(
            file_pattern="output.mp3", upload_options=batch_models.OutputFileUploadConfiguration(upload_condition="tasksuccess"),
            destination=batch_models.OutputFileDestination(container=batch_models.OutputFileBlobContainerDestination(
                container_url="http://127.0.0.1:1/devstoreaccount1/out", path="folder/a b.mp3",
                upload_headers=[batch_models.OutputFileUploadHeader(name="x-ms-meta-source_container", value="in"),
                                batch_models.OutputFileUploadHeader(name="x-ms-meta-source_etag", value="0xE")])))]))
    wait_for(lambda: client.get_task(job_id, "t1").state == "completed", 20, what="task done")
    assert [(j.job_id, j.state) for j in monitor.our_jobs()] == [(job_id, "active")]
    [(changed, token)] = list(monitor.task_change_pages(job_id, before))
    assert [(t.task_id, t.job_id) for t in changed] == [("t1", job_id)] and changed[0].state == "completed"
    assert token is None
    assert list(monitor.task_change_pages(job_id, datetime.now(timezone.utc) + timedelta(minutes=1))) == [([], None)]
    origin = monitor.task_origin(job_id, "t1")
    assert (origin.input_name, origin.input_container, origin.input_etag, origin.output_name) == \
        ("folder/a b.mp4", "in", "0xE", "folder/a b.mp3")
    counts = monitor.task_counts([job_id, f"{prefix}-20000101-000000"])  # a job that is gone counts nothing
    assert counts.completed == 1 and counts.active == 0
    assert monitor.delete_task(job_id, "t1") and monitor.delete_task(job_id, "t1")  # already gone is fine
    assert monitor.task_origin(job_id, "t1") is None
    monitor.delete_job(job_id)
    monitor.delete_job(job_id)  # already deleting or gone is fine
    wait_for(lambda: monitor.our_jobs() == [], 20, what="job deleted")


def test_a_task_listing_resumes_from_its_continuation_token(emulator, monkeypatch):
    """Reconcile saves the token of the next page when it runs out of time; the SDK must resume from it."""
    monkeypatch.setattr(batch_module, "_PAGE", 2)
    client = emulator.client()
    pool_id, job_id = unique("p-"), unique("j-")
    client.create_job(batch_models.BatchJobCreateOptions(id=job_id, pool_info=batch_models.BatchPoolInfo(pool_id=pool_id)))
    client.create_tasks(job_id, [batch_models.BatchTaskCreateOptions(id=f"t{i}", command_line="/bin/sh -c true")
                                 for i in range(5)])
    monitor = _monitor(client, pool_id, job_id)
    first, token = next(iter(monitor.task_change_pages(job_id, None)))
    assert len(first) == 2 and token
    rest = list(monitor.task_change_pages(job_id, None, token))
    assert [len(page) for page, _ in rest] == [2, 1] and rest[-1][1] is None
    assert sorted(t.task_id for t in first + [t for page, _ in rest for t in page]) == [f"t{i}" for i in range(5)]


def test_pool_actions_use_the_api_version_the_sdk_sends(emulator):
    """Resize, stop-resize and remove-nodes go through send_request with shared.batch.API_VERSION: it must be
    the one the pinned SDK's own operations send, or the two kinds of call would speak different versions."""
    client = emulator.client()
    sent: list[str] = []
    with pytest.raises(Exception):
        client.get_pool(unique("p-"), raw_request_hook=lambda r: sent.append(r.http_request.url))
    assert f"api-version={API_VERSION}" in sent[0]


def test_pool_actions_on_a_missing_pool_carry_the_service_error_code(emulator):
    client = emulator.client()
    monitor = _monitor(client, unique("p-"), unique("j-"))
    for action in (lambda: monitor.resize(1), monitor.stop_resize, lambda: monitor.remove_nodes(("n1",))):
        with pytest.raises(PoolActionRefused) as refused:
            action()
        assert refused.value.status == 404 and refused.value.code == "PoolNotFound"
