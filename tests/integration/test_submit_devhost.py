"""The whole local chain as a person runs it: the dev Functions host polls Azurite, binds a
`BlobClient` through the SDK-type binding extension, calls `function_app.process_upload`, and the
Batch emulator runs the task. Pool pre-created with a fixed node so no timer is needed."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.batch import models as batch_models
from azure.core.credentials import AzureNamedKeyCredential
from azure.data.tables import TableClient
from azure.storage.blob import BlobServiceClient

import tests.fixtures.batch_emulator as _emulator_plugin
from devstack import media
from shared import naming, pool_spec, runtime
from shared.settings import Settings
from tests.app.stack import SAMPLE, probe, unique, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not hasattr(_emulator_plugin, "batch_emulator_module"), reason="batch_emulator fixture not available"),
]
devhost = pytest.importorskip("devstack.devhost")

ROOT = Path(__file__).resolve().parents[2]


def test_upload_through_the_dev_host_becomes_an_mp3(tmp_path, storage_connection_string, batch_emulator_module,
                                                    clip_dir):
    emu = batch_emulator_module
    values = {**SAMPLE, "AzureWebJobsStorage": storage_connection_string, "MEDIA_STORAGE": storage_connection_string,
              "BATCH_ACCOUNT_URL": emu.url, "BATCH_ACCOUNT_NAME": emu.account_name, "BATCH_ACCOUNT_KEY": emu.account_key,
              "INPUT_CONTAINER": unique("in-"), "OUTPUT_CONTAINER": unique("out-"), "LOGS_CONTAINER": unique("logs-"),
              "LEDGER_TABLE": unique("ledger"), "BATCH_POOL_ID": unique("pool-"), "BATCH_JOB_ID": unique("job-"),
              "TIMER_SCHEDULE": "0 0 0 1 1 *"}  # keep a timer (issue 5) out of this test's way
    settings_file = tmp_path / "local.settings.json"
    settings_file.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    settings = Settings.from_env(values)

    spec = pool_spec.build_pool(settings)
    batch = BatchClient(emu.url, AzureNamedKeyCredential(emu.account_name, emu.account_key))
    batch.create_pool(batch_models.BatchPoolCreateOptions(
        id=spec.id, vm_size=spec.vm_size, virtual_machine_configuration=spec.virtual_machine_configuration,
        task_slots_per_node=spec.task_slots_per_node, start_task=spec.start_task, target_dedicated_nodes=1))
    blobs = BlobServiceClient.from_connection_string(storage_connection_string)
    blobs.create_container(settings.input_container)
    clip = media.make_clip(clip_dir / "devhost.mp4", seconds=2.0)
    name = "from host/ü clip.mp4"
    blobs.get_blob_client(settings.input_container, name).upload_blob(clip.read_bytes())
    etag = blobs.get_blob_client(settings.input_container, name).get_blob_properties().etag

    runtime.set_service(None)          # the app reads its settings from the host's environment
    host = devhost.DevHost(ROOT, settings_path=settings_file, port=None, poll_interval=0.2).start()
    try:
        host.poll_now()
        host.wait_idle(timeout=60)
        task_id = naming.task_id(name, etag)
        table = TableClient.from_connection_string(storage_connection_string, table_name=settings.ledger_table)
        job_id = table.get_entity(settings.job_id, task_id)["JobId"]
        task = wait_for(lambda: (t := batch.get_task(job_id, task_id)).state == "completed" and t, 60,
                        what="the task to complete")
        assert task.execution_info.result == "success", task.execution_info.failure_info
        mp3 = tmp_path / "out.mp3"
        mp3.write_bytes(blobs.get_blob_client(settings.output_container, "from host/ü clip.mp3")
                        .download_blob().readall())
        duration, _ = probe(mp3)
        assert abs(duration - 2.0) < 0.25
        assert table.get_entity(settings.job_id, task_id)["InputName"] == name
    finally:
        host.stop()
        runtime.set_service(None)
        batch.close()
