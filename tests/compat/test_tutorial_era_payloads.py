"""The ffmpeg tutorial's era (azure-batch 4.1.3 / 5.1.1, api-versions 2018-03-01.6.1 / 2018-08-01.7.0): resource
files name their URL `blobSource` (renamed `httpUrl` in 2018-12-01.8.0). Replayed over raw REST with the body
shape azure-batch 4.1.3 sends, against the emulator and Azurite."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

from devstack.batch_emulator.executor import resource_file_problem
from devstack.compat.rest import DocsFormClient

TUTORIAL_API_VERSION = "2018-03-01.6.1"  # azure-batch 4.1.3


def _sas_url(connection_string: str, container: str, blob: str, data: bytes) -> str:
    service = BlobServiceClient.from_connection_string(connection_string)
    service.create_container(container)
    service.get_blob_client(container, blob).upload_blob(data)
    sas = generate_container_sas(service.account_name, container, account_key=service.credential.account_key,
                                 permission=ContainerSasPermissions(read=True),
                                 expiry=datetime.now(timezone.utc) + timedelta(hours=1))
    return f"{service.url.rstrip('/')}/{container}/{blob}?{sas}"


def test_blob_source_resource_file_is_downloaded(batch_emulator, storage_connection_string):
    emu = batch_emulator
    rest = DocsFormClient(emu.url, emu.account_name, emu.account_key, api_version=TUTORIAL_API_VERSION)
    url = _sas_url(storage_connection_string, "tutorialin", "clip.txt", b"tutorial input\n")
    pool = {"id": "LinuxFfmpegPool", "vmSize": "STANDARD_A1_v2", "targetLowPriorityNodes": 1,
            "virtualMachineConfiguration": {
                "imageReference": {"publisher": "Canonical", "offer": "UbuntuServer", "sku": "16.04-LTS",
                                   "version": "latest"},
                "nodeAgentSKUId": "batch.node.ubuntu 16.04"}}
    assert rest.request("POST", "/pools", json_body=pool).status_code == 201
    assert rest.request("POST", "/jobs", json_body={"id": "LinuxFfmpegJob", "poolInfo": {"poolId": "LinuxFfmpegPool"}}
                        ).status_code == 201
    task = {"id": "Task0", "commandLine": '/bin/bash -c "cat clip.txt"',
            "resourceFiles": [{"blobSource": url, "filePath": "clip.txt"}]}
    added = rest.request("POST", "/jobs/LinuxFfmpegJob/addtaskcollection", json_body={"value": [task]})
    assert added.status_code == 200, added.text
    assert added.json()["value"][0]["status"] == "success", added.text

    deadline = time.monotonic() + 30
    while (got := rest.request("GET", "/jobs/LinuxFfmpegJob/tasks/Task0").json())["state"] != "completed":
        assert time.monotonic() < deadline, got
        time.sleep(0.1)
    assert got["executionInfo"]["exitCode"] == 0, got["executionInfo"]
    assert got["resourceFiles"][0]["blobSource"] == url  # echoed under the name the client sent
    stdout = rest.request("GET", "/jobs/LinuxFfmpegJob/tasks/Task0/files/stdout.txt")
    assert stdout.content == b"tutorial input\n"


@pytest.mark.parametrize("resource_file, problem", [
    ({"blobSource": "http://x/c/b?sig=1", "filePath": "b"}, None),
    ({"blobSource": "http://x/c/b?sig=1"}, "filePath is required with blobSource and must name a file"),
    ({"blobSource": "http://x/c/b", "httpUrl": "http://x/c/b", "filePath": "b"},
     "exactly one of httpUrl, storageContainerUrl and autoStorageContainerName must be specified"),
    ({"blobSource": "http://x/c/b", "blobPrefix": "p", "filePath": "b"},
     "blobPrefix is valid only with autoStorageContainerName or storageContainerUrl"),
])
def test_blob_source_follows_the_http_url_rules(resource_file, problem):
    assert resource_file_problem(resource_file) == problem
