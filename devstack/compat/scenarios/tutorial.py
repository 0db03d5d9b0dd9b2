"""The flow of Microsoft's "Run a parallel workload with Azure Batch using the Python API" tutorial
(Azure-Samples/batch-python-ffmpeg-tutorial), with the client libraries of its era: azure-batch 4.x-6.x and
azure-storage-blob 1.x/2.x (BlockBlobService). Our own equivalent of its steps, adapted only in endpoints and
credentials (Azurite through a connection string, the emulator's URL and key) and in one place that would change
the machine it runs on (below).

Steps as the tutorial does them: create `input`/`output` containers, upload MP4s, read-SAS URLs as ResourceFiles,
a write-SAS container URL for OutputFiles; a pool of low-priority STANDARD_A1_v2 Ubuntu nodes whose admin start
task (wait_for_success) readies ffmpeg; a job; one ffmpeg task per file added with task.add_collection; poll
task.list until every task is completed; then (beyond the tutorial's portal step) check the MP3s in `output`;
delete the input container, the job and the pool.

Deviation: the tutorial's start task runs `apt-get update && apt-get install -y ffmpeg` as admin. Emulator nodes
are local processes on the developer's machine, so that would modify the host; the start task here keeps the
tutorial's shape (bash, admin auto-user, wait_for_success) but only checks the ffmpeg the emulator provides.
"""
from __future__ import annotations

import datetime
import inspect
import os
import sys

import azure.batch.batch_auth as batchauth
import azure.batch.batch_service_client as batch
import azure.batch.models as batchmodels
from azure.storage.blob import BlobPermissions, BlockBlobService

from _steps import ScenarioAborted, Steps, check, env, task_error, wait_until

PREFIX = env("COMPAT_PREFIX")
POOL_ID, JOB_ID = f"{PREFIX}-LinuxFfmpegPool", f"{PREFIX}-LinuxFfmpegJob"
INPUT, OUTPUT = f"{PREFIX}-input".lower(), f"{PREFIX}-output".lower()
LOW_PRIORITY_NODES = 5
VM_SIZE = "STANDARD_A1_v2"


def batch_client() -> batch.BatchServiceClient:
    credentials = batchauth.SharedKeyCredentials(env("COMPAT_BATCH_ACCOUNT"), env("COMPAT_BATCH_KEY"))
    params = inspect.signature(batch.BatchServiceClient.__init__).parameters
    url_arg = "batch_url" if "batch_url" in params else "base_url"   # 6.x renamed it
    return batch.BatchServiceClient(credentials, **{url_arg: env("COMPAT_BATCH_URL")})


def resource_file(blob_name: str, sas_url: str) -> batchmodels.ResourceFile:
    # api-versions before 2018-12-01 name the URL blobSource; 6.x calls it httpUrl.
    if "http_url" in batchmodels.ResourceFile._attribute_map:
        return batchmodels.ResourceFile(http_url=sas_url, file_path=blob_name)
    return batchmodels.ResourceFile(blob_source=sas_url, file_path=blob_name)


def main() -> int:
    steps = Steps()
    try:
        scenario(steps)
    except ScenarioAborted:
        pass
    return steps.exit_code()


def scenario(steps: Steps) -> None:
    blobs = BlockBlobService(connection_string=env("COMPAT_STORAGE_CONNECTION_STRING"))
    client = batch_client()
    clips = sorted(os.path.join(env("COMPAT_CLIPS"), f) for f in os.listdir(env("COMPAT_CLIPS")) if f.endswith(".mp4"))

    def containers() -> None:
        blobs.create_container(INPUT, fail_on_exist=False)
        blobs.create_container(OUTPUT, fail_on_exist=False)
    steps.run("blob: create input/output containers", containers, critical=True)

    def upload() -> list:
        files = []
        expiry = datetime.datetime.utcnow() + datetime.timedelta(hours=2)
        for path in clips:
            name = os.path.basename(path)
            blobs.create_blob_from_path(INPUT, name, path)
            sas = blobs.generate_container_shared_access_signature(INPUT, permission=BlobPermissions.READ,
                                                                   expiry=expiry)
            files.append(resource_file(name, blobs.make_blob_url(INPUT, name, sas_token=sas)))
        return files
    input_files = steps.run(f"blob: upload {len(clips)} MP4s, read-SAS resource files", upload, critical=True)

    def output_sas_url() -> str:
        sas = blobs.generate_container_shared_access_signature(
            OUTPUT, permission=BlobPermissions.WRITE,
            expiry=datetime.datetime.utcnow() + datetime.timedelta(hours=2))
        return f"{env('COMPAT_BLOB_ENDPOINT')}/{OUTPUT}?{sas}"   # the tutorial builds this URL by hand too
    output_url = output_sas_url()   # not a step: its value is a credential and step details are printed

    steps.run("pool.add (UbuntuServer 16.04, low-priority, admin start task)", lambda: client.pool.add(
        batchmodels.PoolAddParameter(
            id=POOL_ID,
            virtual_machine_configuration=batchmodels.VirtualMachineConfiguration(
                image_reference=batchmodels.ImageReference(publisher="Canonical", offer="UbuntuServer",
                                                           sku="16.04-LTS", version="latest"),
                node_agent_sku_id="batch.node.ubuntu 16.04"),
            vm_size=VM_SIZE, target_dedicated_nodes=0, target_low_priority_nodes=LOW_PRIORITY_NODES,
            start_task=batchmodels.StartTask(
                command_line='/bin/bash -c "command -v ffmpeg && ffmpeg -version"',
                wait_for_success=True,
                user_identity=batchmodels.UserIdentity(auto_user=batchmodels.AutoUserSpecification(
                    scope=batchmodels.AutoUserScope.pool, elevation_level=batchmodels.ElevationLevel.admin))))),
        critical=True)
    steps.run("job.add", lambda: client.job.add(batchmodels.JobAddParameter(
        id=JOB_ID, pool_info=batchmodels.PoolInformation(pool_id=POOL_ID))), critical=True)

    def add_tasks() -> str:
        tasks = []
        for idx, input_file in enumerate(input_files):
            output_path = "".join(input_file.file_path.split(".")[:-1]) + ".mp3"
            tasks.append(batchmodels.TaskAddParameter(
                id=f"Task{idx}",
                command_line=f'/bin/bash -c "ffmpeg -i {input_file.file_path} {output_path} "',
                resource_files=[input_file],
                output_files=[batchmodels.OutputFile(
                    file_pattern=output_path,
                    destination=batchmodels.OutputFileDestination(
                        container=batchmodels.OutputFileBlobContainerDestination(container_url=output_url)),
                    upload_options=batchmodels.OutputFileUploadOptions(
                        upload_condition=batchmodels.OutputFileUploadCondition.task_success))]))
        result = client.task.add_collection(JOB_ID, tasks)
        refused = [task_error(r) for r in result.value if r.error is not None]
        check(not refused, f"refused: {refused}")
        return f"{len(tasks)} tasks"
    steps.run("task.add_collection (ffmpeg, ResourceFile + OutputFile)", add_tasks, critical=True)

    steps.run("task.list until all completed", lambda: wait_until(
        lambda: list(client.task.list(JOB_ID)),
        lambda ts: len(ts) == len(clips) and all(t.state == batchmodels.TaskState.completed for t in ts),
        180, "all tasks completed", interval=1.0), critical=True)

    def task_results() -> None:
        for t in client.task.list(JOB_ID):
            info = t.execution_info
            check(info.exit_code == 0, f"{t.id} exit code {info.exit_code}: {info.failure_info}")
    steps.run("task execution_info exit codes 0", task_results)

    def outputs() -> str:
        names = sorted(b.name for b in blobs.list_blobs(OUTPUT))
        expected = sorted(os.path.basename(p)[:-4] + ".mp3" for p in clips)
        check(names == expected, f"output blobs {names}, expected {expected}")
        data = blobs.get_blob_to_bytes(OUTPUT, names[0]).content
        check(len(data) > 1000 and (data[:3] == b"ID3" or data[0] == 0xFF), f"{names[0]} is not an MP3")
        return ", ".join(names)
    steps.run("blob: MP3s in output container", outputs)

    def node_file() -> str:
        # Beyond the tutorial ("you can also download the files programmatically from the compute nodes"): a
        # nested task file path, which azure-batch 4.x signs with "/" but sends as %2F.
        name = os.path.basename(clips[0])[:-4] + ".mp3"
        data = b"".join(client.file.get_from_task(JOB_ID, "Task0", f"wd/{name}"))
        check(len(data) > 1000, f"wd/{name}: {len(data)} bytes")
        return f"wd/{name}"
    steps.run("file.get_from_task wd/<mp3> (from the node)", node_file)

    steps.run("blob: delete input container", lambda: blobs.delete_container(INPUT))
    steps.run("job.delete", lambda: client.job.delete(JOB_ID))
    steps.run("pool.delete", lambda: client.pool.delete(POOL_ID))


if __name__ == "__main__":
    sys.exit(main())
