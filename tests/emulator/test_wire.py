"""Wire details: shared-key verification, error body and headers, api-versions, 501 for unknown operations,
bearer opt-in, injected throttling as the SDK's retry pipeline sees it."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError

from .helpers import job_options, pool_options, send, shell_task, signed

POOL_BODY = json.dumps({
    "id": "rawpool", "vmSize": "standard_d2s_v3",
    "virtualMachineConfiguration": {"imageReference": {"publisher": "canonical", "offer": "ubuntu",
                                                       "sku": "22_04-lts", "version": "latest"},
                                    "nodeAgentSKUId": "batch.node.ubuntu 22.04"},
}).encode()


def _url(emu, path: str, query: str = "api-version=2025-06-01") -> str:
    return f"{emu.url}{path}?{query}"


def test_wrong_key_is_403_authentication_failed(batch_emulator):
    wrong = base64.b64encode(b"not the key" * 4).decode()
    client = BatchClient(batch_emulator.url, AzureNamedKeyCredential(batch_emulator.account_name, wrong))
    with pytest.raises(HttpResponseError) as exc:
        client.create_job(job_options("j", "p"))
    assert exc.value.status_code == 403
    assert exc.value.error.code == "AuthenticationFailed"
    detail = {d.code: d.message for d in exc.value.error.details}["AuthenticationErrorDetail"]
    assert "string to sign" in detail and "/devbatch/jobs" in detail
    assert list(batch_emulator.client().list_jobs()) == []  # nothing was created


@pytest.mark.parametrize("tamper", ["query", "path", "body_length", "content_type", "method"])
def test_tampered_requests_are_rejected(batch_emulator, tamper):
    emu = batch_emulator
    if tamper in ("body_length", "content_type"):
        request = signed("POST", _url(emu, "/pools"), emu.account_name, emu.account_key, body=POOL_BODY)
        if tamper == "body_length":
            response = send(request, body=POOL_BODY.replace(b"rawpool", b"rawpool-evil"))
        else:
            request.headers["content-type"] = "application/json"
            response = send(request)
    else:
        request = signed("GET", _url(emu, "/jobs", "api-version=2025-06-01&maxresults=5"), emu.account_name,
                         emu.account_key)
        if tamper == "query":
            request.url = request.url.replace("maxresults=5", "maxresults=6")
        elif tamper == "path":
            request.url = request.url.replace("/jobs", "/pools")
        else:
            request.method = "HEAD"
        response = send(request)
    assert response.status_code == 403
    if tamper != "method":  # HEAD responses carry no body
        assert response.json()["code"] == "AuthenticationFailed"
    assert emu.stats()["operations"].get("Pool_Add", 0) == 0


def test_untampered_raw_request_succeeds_with_service_headers(batch_emulator):
    emu = batch_emulator
    request = signed("POST", _url(emu, "/pools"), emu.account_name, emu.account_key, body=POOL_BODY,
                     headers={"client-request-id": "abc-123"})
    response = send(request)
    assert response.status_code == 201, response.text
    assert response.content == b""
    h = response.headers
    assert h["ETag"].startswith("0x") and h["Last-Modified"].endswith("GMT")
    assert h["DataServiceId"] == f"{emu.url}/pools/rawpool"
    assert h["DataServiceVersion"] == "3.0" and h["request-id"]
    assert h["client-request-id"] == "abc-123"

    get = send(signed("GET", _url(emu, "/pools/rawpool"), emu.account_name, emu.account_key))
    assert get.headers["content-type"] == "application/json;odata=minimalmetadata"
    assert get.headers["ETag"] == get.json()["eTag"]
    assert get.json()["odata.metadata"] == f"{emu.url}/$metadata#pools/@Element"


def test_error_body_shape_matches_the_service(batch_emulator):
    emu = batch_emulator
    response = send(signed("GET", _url(emu, "/pools/nope"), emu.account_name, emu.account_key))
    assert response.status_code == 404
    body = response.json()
    assert body["odata.metadata"].endswith(
        "/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element")
    assert body["code"] == "PoolNotFound"
    assert body["message"]["lang"] == "en-US"
    text = body["message"]["value"]
    assert text.startswith("The specified pool does not exist.\nRequestId:")
    assert f"RequestId:{response.headers['request-id']}\nTime:" in text


def test_missing_authorization_and_stale_date(batch_emulator):
    emu = batch_emulator
    plain = send(signed("GET", _url(emu, "/pools"), emu.account_name, emu.account_key))
    assert plain.status_code == 200
    request = signed("GET", _url(emu, "/pools"), emu.account_name, emu.account_key)
    del request.headers["Authorization"]
    assert send(request).status_code == 403
    old = format_datetime(datetime.now(timezone.utc) - timedelta(minutes=20), usegmt=True)
    stale = send(signed("GET", _url(emu, "/pools"), emu.account_name, emu.account_key, headers={"ocp-date": old}))
    assert stale.status_code == 403
    assert "outside the accepted window" in stale.json()["values"][0]["value"]


@pytest.mark.parametrize("query, status, code", [
    ("api-version=2025-06-01", 200, None),
    ("api-version=2024-07-01.20.0", 200, None),       # azure-batch 15.0.0b2 / 15.1.0b1 (az CLI and 14.x send 2024-02-01.19.0)
    ("api-version=2018-12-01.8.0", 200, None),        # azure-batch 6.x
    ("", 400, "MissingRequiredQueryParameter"),
    ("api-version=latest", 400, "InvalidQueryParameterValue"),
    ("api-version=2099-01-01", 400, "UnsupportedRequestVersion"),
])
def test_api_versions(batch_emulator, query, status, code):
    emu = batch_emulator
    response = send(signed("GET", _url(emu, "/jobs", query), emu.account_name, emu.account_key))
    assert response.status_code == status
    if code:
        assert response.json()["code"] == code


def test_unknown_operations_answer_501_naming_the_operation(batch_emulator):
    client = batch_emulator.client()
    with pytest.raises(HttpResponseError) as exc:
        list(client.list_supported_images())
    assert exc.value.status_code == 501
    assert exc.value.error.code == "NotImplemented"
    assert "GET /supportedimages" in exc.value.error.message
    emu = batch_emulator
    response = send(signed("DELETE", _url(emu, "/pools"), emu.account_name, emu.account_key))
    assert response.status_code == 501 and "DELETE /pools" in response.json()["message"]["value"]


def test_bearer_tokens_only_when_allowed(batch_emulator_factory):
    token = "eyJhbGciOiJub25lIn0.eyJhdWQiOiJodHRwczovL2JhdGNoLmNvcmUud2luZG93cy5uZXQvIn0.sig"
    now = format_datetime(datetime.now(timezone.utc), usegmt=True)
    for allowed, status in ((False, 403), (True, 200)):
        emu = batch_emulator_factory(allow_bearer=allowed)
        import httpx
        response = httpx.get(_url(emu, "/pools"), headers={"Authorization": f"Bearer {token}", "ocp-date": now})
        assert response.status_code == status


def test_injected_503_with_retry_after_is_retried_by_the_sdk(batch_emulator):
    emu = batch_emulator
    client = emu.client()
    client.create_job(job_options("j", "p"))
    emu.set_faults(count=2, status=503, retryAfter=0, operations=["Task_Add"])
    client.create_task("j", shell_task("t", "true"))  # succeeds on the third attempt
    stats = emu.stats()["byOperationStatus"]["Task_Add"]
    assert stats == {"503": 2, "201": 1}
    assert client.get_task("j", "t").id == "t"


def test_injected_post_429_without_retry_after_surfaces_to_the_caller(batch_emulator):
    emu = batch_emulator
    client = emu.client()
    client.create_job(job_options("j", "p"))
    emu.set_faults(count=1, status=429, retryAfter=None, operations=["Task_Add"])
    with pytest.raises(HttpResponseError) as exc:
        client.create_task("j", shell_task("t", "true"))
    assert exc.value.status_code == 429 and exc.value.error.code == "TooManyRequests"
    client.create_task("j", shell_task("t", "true"))  # the fault was one-shot
    assert emu.stats()["byOperationStatus"]["Task_Add"] == {"429": 1, "201": 1}


def test_pool_create_then_raw_get_lists_via_sdk(batch_emulator):
    client = batch_emulator.client()
    client.create_pool(pool_options("p1"))
    assert [p.id for p in client.list_pools(filter="id eq 'P1'")] == ["p1"]
