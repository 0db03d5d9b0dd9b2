"""Request bodies exactly as other clients put them on the wire (captured from az CLI 2.91.0, which bundles
azure-batch 15.0.0b1 and sends api-version 2024-02-01.19.0), replayed over raw REST. The az CLI passes its
numeric arguments through as JSON strings; the service's JSON reader converts them, so the emulator must too."""
from __future__ import annotations

import time

import pytest

from devstack.batch_emulator import errors
from devstack.batch_emulator.backend import validate
from devstack.compat.rest import DocsFormClient

AZ_API_VERSION = "2024-02-01.19.0"
# az batch pool create --id ... --vm-size Standard_D2s_v3 --image canonical:0001-com-ubuntu-server-jammy:22_04-lts
#   --node-agent-sku-id "batch.node.ubuntu 22.04" --target-dedicated-nodes 1
#   --start-task-command-line "/bin/sh -c 'echo started'" --start-task-wait-for-success
AZ_POOL_CREATE = {"id": "azpool", "vmSize": "Standard_D2s_v3",
                  "virtualMachineConfiguration": {
                      "imageReference": {"publisher": "canonical", "offer": "0001-com-ubuntu-server-jammy",
                                         "sku": "22_04-lts"},
                      "nodeAgentSKUId": "batch.node.ubuntu 22.04"},
                  "targetDedicatedNodes": "1",
                  "startTask": {"commandLine": "/bin/sh -c 'echo started'", "waitForSuccess": True}}
# az batch pool resize --pool-id azpool --target-dedicated-nodes 2
AZ_POOL_RESIZE = {"targetDedicatedNodes": "2"}
# az batch task create --job-id ... --task-id t2 --command-line /bin/true --max-task-retry-count 2
#   --max-wall-clock-time PT1H
AZ_TASK_CREATE = {"id": "t2", "commandLine": "/bin/true",
                  "constraints": {"maxWallClockTime": "PT01H00M00S", "maxTaskRetryCount": "2"}}


@pytest.fixture
def rest(batch_emulator) -> DocsFormClient:
    emu = batch_emulator
    return DocsFormClient(emu.url, emu.account_name, emu.account_key, api_version=AZ_API_VERSION)


def _wait(probe, predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    value = probe()
    while not predicate(value):
        assert time.monotonic() < deadline, f"timed out; last value {value!r}"
        time.sleep(0.05)
        value = probe()
    return value


def test_az_pool_create_and_resize_with_string_counts(rest):
    assert rest.request("POST", "/pools", json_body=AZ_POOL_CREATE).status_code == 201
    pool = rest.request("GET", "/pools/azpool").json()
    assert pool["targetDedicatedNodes"] == 1  # stored and echoed as a number, like the service
    assert pool["startTask"]["waitForSuccess"] is True
    pool = _wait(lambda: rest.request("GET", "/pools/azpool").json(),
                 lambda p: p["allocationState"] == "steady" and p["currentDedicatedNodes"] == 1)
    resized = rest.request("POST", "/pools/azpool/resize", json_body=AZ_POOL_RESIZE)
    assert resized.status_code == 202, resized.text
    assert rest.request("GET", "/pools/azpool").json()["targetDedicatedNodes"] == 2


def test_az_task_create_with_string_retry_count(rest):
    assert rest.request("POST", "/jobs", json_body={"id": "azjob", "poolInfo": {"poolId": "nopool"}}
                        ).status_code == 201
    created = rest.request("POST", "/jobs/azjob/tasks", json_body=AZ_TASK_CREATE)
    assert created.status_code == 201, created.text
    task = rest.request("GET", "/jobs/azjob/tasks/t2").json()
    assert task["constraints"]["maxTaskRetryCount"] == 2


def test_non_numeric_strings_are_still_invalid_property_values(rest):
    body = {**AZ_POOL_CREATE, "id": "badpool", "targetDedicatedNodes": "one"}
    response = rest.request("POST", "/pools", json_body=body)
    assert response.status_code == 400
    error = response.json()
    assert error["code"] == "InvalidPropertyValue"
    assert {"key": "PropertyName", "value": "targetDedicatedNodes"} in error["values"]
    assert rest.request("GET", "/pools/badpool").status_code == 404


@pytest.mark.parametrize("raw, expected", [("3", 3), ("-1", -1), ("+2", 2), (4, 4)])
def test_integer_strings_are_converted_in_place(raw, expected):
    body = {"n": raw}
    assert validate.integer(body, "n") == expected
    assert body["n"] == expected and isinstance(body["n"], int)


@pytest.mark.parametrize("raw", ["1.5", "1e3", " 1", "", "0x10", True])
def test_other_values_are_not_integers(raw):
    with pytest.raises(errors.BatchError) as exc:
        validate.integer({"n": raw}, "n")
    assert exc.value.code == "InvalidPropertyValue"


@pytest.mark.parametrize("raw, expected", [("true", True), ("False", False), (True, True)])
def test_boolean_strings_are_converted(raw, expected):
    body = {"b": raw}
    assert validate.boolean(body, "b") is expected
    assert body["b"] is expected
