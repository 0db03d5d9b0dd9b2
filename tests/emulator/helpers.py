"""Shared helpers for emulator tests: SDK model builders, polling, and raw requests signed by the SDK's own
shared-key policy (so wire-level tests use exactly the client's algorithm)."""
from __future__ import annotations

import time
from typing import Any, Callable, TypeVar

import httpx
from azure.batch import models as m
from azure.batch._patch import BatchSharedKeyAuthPolicy
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.rest import HttpRequest

T = TypeVar("T")

IMAGE = m.BatchVmImageReference(publisher="canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts",
                                version="latest")
VM_CONFIG = m.VirtualMachineConfiguration(image_reference=IMAGE, node_agent_sku_id="batch.node.ubuntu 22.04")


def pool_options(pool_id: str, **kwargs: Any) -> m.BatchPoolCreateOptions:
    return m.BatchPoolCreateOptions(id=pool_id, vm_size="standard_d2s_v3", virtual_machine_configuration=VM_CONFIG,
                                    **kwargs)


def job_options(job_id: str, pool_id: str, **kwargs: Any) -> m.BatchJobCreateOptions:
    return m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(pool_id=pool_id), **kwargs)


def shell_task(task_id: str, script: str, **kwargs: Any) -> m.BatchTaskCreateOptions:
    # Batch does not run command lines in a shell (SDK docstring): wrap explicitly.
    quoted = script.replace("'", "'\"'\"'")
    return m.BatchTaskCreateOptions(id=task_id, command_line=f"/bin/sh -c '{quoted}'", **kwargs)


def wait_for(probe: Callable[[], T], predicate: Callable[[T], bool], timeout: float = 30.0,
             interval: float = 0.05, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    value = probe()
    while not predicate(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {value!r}")
        time.sleep(interval)
        value = probe()
    return value


def wait_task_completed(client, job_id: str, task_id: str, timeout: float = 60.0) -> m.BatchTask:
    return wait_for(lambda: client.get_task(job_id, task_id), lambda t: t.state == m.BatchTaskState.COMPLETED,
                    timeout=timeout, what=f"task {task_id} to complete")


def wait_idle_nodes(client, pool_id: str, count: int, timeout: float = 30.0) -> list[m.BatchNode]:
    return wait_for(lambda: list(client.list_nodes(pool_id)),
                    lambda ns: sum(1 for n in ns if n.state == m.BatchNodeState.IDLE) >= count,
                    timeout=timeout, what=f"{count} idle nodes in {pool_id}")


def signed(method: str, url: str, account: str, key: str, *, body: bytes | None = None,
           headers: dict[str, str] | None = None) -> HttpRequest:
    """An HttpRequest signed by azure-batch's BatchSharedKeyAuthPolicy."""
    request = HttpRequest(method, url, headers=dict(headers or {}), content=body)
    if body is not None:
        request.headers.setdefault("content-type", "application/json; odata=minimalmetadata")
        request.headers["Content-Length"] = str(len(body))
    policy = BatchSharedKeyAuthPolicy(AzureNamedKeyCredential(account, key))
    policy.on_request(PipelineRequest(request, PipelineContext(None)))
    return request


def send(request: HttpRequest, *, body: bytes | None = None) -> httpx.Response:
    """Send with httpx; `body` may differ from what was signed (tamper tests)."""
    content = body if body is not None else request.content
    headers = dict(request.headers)
    if body is not None:
        headers["Content-Length"] = str(len(body))
    return httpx.request(request.method, request.url, headers=headers, content=content, timeout=10)
