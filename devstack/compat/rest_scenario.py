"""The raw REST client's scenario: what a curl/httpx script written from the REST reference does, signed per the
documentation (devstack.compat.rest), including the error answers such a script has to parse."""
from __future__ import annotations

import time
from .rest import DocsFormClient
from .results import ClientResult, StepRecorder

ODATA_ERROR = "#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element"


def _expect(response, status: int, code: str | None = None) -> str:
    if response.status_code != status:
        raise AssertionError(f"HTTP {response.status_code} (wanted {status}): {response.text[:300]}")
    if code is not None:
        body = response.json()
        if body.get("code") != code or not str(body.get("odata.metadata", "")).endswith(ODATA_ERROR):
            raise AssertionError(f"error body {body}")
        if "RequestId:" not in body["message"]["value"]:
            raise AssertionError(f"message without RequestId: {body['message']}")
        return code
    return ""


def run_rest(base_url: str, account: str, key: str, prefix: str) -> ClientResult:
    result = ClientResult("rest", "raw REST (httpx, docs-form Shared Key)", "api 2024-07-01.20.0")
    started = time.monotonic()
    rec = StepRecorder(result)
    api = DocsFormClient(base_url, account, key, api_version="2024-07-01.20.0")
    pool, job = f"{prefix}-pool", f"{prefix}-job"
    pool_body = {"id": pool, "vmSize": "standard_d2s_v3", "targetDedicatedNodes": 1,
                 "virtualMachineConfiguration": {
                     "imageReference": {"publisher": "canonical", "offer": "ubuntu-24_04-lts", "sku": "server",
                                        "version": "latest"},
                     "nodeAgentSKUId": "batch.node.ubuntu 24.04"}}

    rec.step("POST /pools", lambda: _expect(api.request("POST", "/pools", json_body=pool_body), 201))
    rec.step("HEAD /pools/{id} (exists)", lambda: _expect(api.request("HEAD", f"/pools/{pool}"), 200))
    rec.step("GET /pools?$filter&maxResults", lambda: _expect(
        api.request("GET", "/pools", query=f"$filter=id%20eq%20'{pool}'&maxResults=10"), 200))
    rec.step("POST /jobs", lambda: _expect(api.request("POST", "/jobs", json_body={
        "id": job, "poolInfo": {"poolId": pool}}), 201))
    rec.step("POST /jobs/{id}/tasks", lambda: _expect(api.request("POST", f"/jobs/{job}/tasks", json_body={
        "id": "hello", "commandLine": "/bin/sh -c 'echo hello from rest'"}), 201))

    def completed() -> str:
        deadline = time.monotonic() + 60
        while True:
            task = api.request("GET", f"/jobs/{job}/tasks/hello").json()
            if task.get("state") == "completed":
                if task["executionInfo"].get("exitCode") != 0:
                    raise AssertionError(f"executionInfo {task['executionInfo']}")
                return "exitCode 0"
            if time.monotonic() > deadline:
                raise TimeoutError(f"task state {task.get('state')}")
            time.sleep(0.2)
    rec.step("GET /jobs/{id}/tasks/{id} until completed", completed)

    def listed() -> str:
        response = api.request("GET", f"/jobs/{job}/tasks",
                               query="$filter=state%20eq%20'completed'&$select=id,state&maxresults=1")
        _expect(response, 200)
        ids = [t["id"] for t in response.json()["value"]]
        if ids != ["hello"]:
            raise AssertionError(f"ids {ids}")
        return ""
    rec.step("GET /jobs/{id}/tasks?$filter&$select", listed)

    def stdout() -> str:
        response = api.request("GET", f"/jobs/{job}/tasks/hello/files/stdout.txt")
        _expect(response, 200)
        if response.content != b"hello from rest\n":
            raise AssertionError(f"stdout {response.content!r}")
        return ""
    rec.step("GET task file stdout.txt", stdout)

    rec.step("400 InvalidRequestBody (malformed JSON)", lambda: _expect(
        api.request("POST", "/jobs", raw_body=b'{"id": '), 400, "InvalidRequestBody"))
    rec.step("400 MissingRequiredProperty", lambda: _expect(
        api.request("POST", "/pools", json_body={"id": "novmsize"}), 400, "MissingRequiredProperty"))
    rec.step("404 PoolNotFound", lambda: _expect(api.request("GET", "/pools/no-such-pool"), 404, "PoolNotFound"))
    rec.step("409 JobExists", lambda: _expect(api.request("POST", "/jobs", json_body={
        "id": job, "poolInfo": {"poolId": pool}}), 409, "JobExists"))

    def unseen_version() -> str:
        other = DocsFormClient(base_url, account, key, api_version="2025-01-01")
        return _expect(other.request("GET", "/jobs"), 200) or "2025-01-01 accepted"
    rec.step("unseen dated api-version accepted", unseen_version)

    def nonsense_version() -> str:
        other = DocsFormClient(base_url, account, key, api_version="2025-1-1")
        return _expect(other.request("GET", "/jobs"), 400, "InvalidQueryParameterValue")
    rec.step("nonsense api-version -> 400", nonsense_version)
    rec.step("403 AuthenticationFailed (wrong key)", lambda: _expect(
        DocsFormClient(base_url, account, "AAAA" + key[4:]).request("GET", "/jobs"), 403, "AuthenticationFailed"))
    rec.step("501 for an operation the emulator lacks", lambda: _expect(
        api.request("GET", "/supportedimages"), 501, "NotImplemented"))
    rec.step("DELETE /jobs/{id} (bodyless)", lambda: _expect(api.request("DELETE", f"/jobs/{job}"), 202))
    rec.step("DELETE /pools/{id} (bodyless)", lambda: _expect(api.request("DELETE", f"/pools/{pool}"), 202))
    result.seconds = time.monotonic() - started
    return result
