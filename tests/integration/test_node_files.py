"""A node does not keep users' media: the task's directory (input, MP3) goes once the task has ended and its
outputs are uploaded (the task's retentionTime; the emulator applies it like the service)."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from devstack import media
from shared.submit import Submitter
from shared.trigger import blob_version
from tests.app.stack import wait_for
from tests.integration.test_timer import make_stack

pytestmark = pytest.mark.integration


def test_input_and_mp3_leave_the_node_after_the_task(storage_connection_string, batch_emulator_factory, tmp_path):
    emulator = batch_emulator_factory(node_start_delay=0.2)
    stack = make_stack(storage_connection_string, emulator)
    try:
        s = stack.service
        limits = replace(s.submitter._limits, node_files_retention=timedelta(seconds=1))
        submitter = Submitter(batch=s.batch, ledger=s.ledger, access=s.access, jobs=s.batch.jobs, limits=limits)
        stack.upload("kept.mp4", media.make_clip(tmp_path / "c.mp4", seconds=1.0, video=False).read_bytes())
        s.ensure_output_containers()
        task_id = submitter.handle(blob_version(stack.blobs.get_blob_client(s.settings.input_container,
                                                                             "kept.mp4"))).row_key
        stack.tick_until(lambda: stack.row(task_id)["State"] == "succeeded", 90, "success")
        job_id = stack.row(task_id)["JobId"]
        task_dirs = lambda: list(emulator.data_dir.glob(f"**/workitems/{job_id}/job-1/{task_id}"))  # noqa: E731
        media_files = lambda: [*emulator.data_dir.glob("**/input.mp4"), *emulator.data_dir.glob("**/output.mp3")]  # noqa: E731
        # The directory is set aside at once and removed after the scheduler's pass: wait for both.
        wait_for(lambda: not task_dirs() and not media_files(), 30, what="the task directory and its media to go")
        assert stack.blobs.get_blob_client(s.settings.output_container, "kept.mp3").exists()  # uploaded first
    finally:
        stack.service.clients.batch.close()
        stack.batch.close()
