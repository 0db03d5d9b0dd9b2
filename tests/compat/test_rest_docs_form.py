"""Raw REST clients that nobody here wrote: requests signed exactly as Microsoft's "Authenticate requests to the
Azure Batch service" page describes (devstack.compat.rest, independent of azure-batch and of the emulator's
verifier), sent with httpx. The documented form differs from the SDK's in ways a curl script hits at once:
lower-cased query names, an empty Date line when ocp-date is sent, an empty Content-Length line for a bodyless
DELETE, sorted multi-values."""
from __future__ import annotations

import base64
import json

import httpx
import pytest

from devstack.compat.rest import DocsFormClient, rfc1123_now, signature, string_to_sign

IMAGE = {"publisher": "Canonical", "offer": "UbuntuServer", "sku": "18.04-LTS", "version": "latest"}


def _pool(pool_id: str) -> dict:
    return {"id": pool_id, "vmSize": "STANDARD_A1_v2",
            "virtualMachineConfiguration": {"imageReference": IMAGE, "nodeAgentSKUId": "batch.node.ubuntu 18.04"}}


@pytest.fixture(scope="module")
def rest(batch_emulator_module) -> DocsFormClient:
    emu = batch_emulator_module
    return DocsFormClient(emu.url, emu.account_name, emu.account_key)


def test_documented_example_string_to_sign():
    # The page's own example: list jobs with a 20 s timeout.
    text = string_to_sign("GET", "https://myaccount.b.batch.azure.com/jobs?api-version=2014-01-01.1.0&timeout=20",
                          {"ocp-date": "Tue, 29 Jul 2014 21:49:13 GMT"}, "myaccount")
    assert text == ("GET\n\n\n\n\n\n\n\n\n\n\n\nocp-date:Tue, 29 Jul 2014 21:49:13 GMT\n"
                    "/myaccount/jobs\napi-version:2014-01-01.1.0\ntimeout:20")


def test_create_get_list_delete_with_documented_signatures(rest):
    created = rest.request("POST", "/pools", json_body=_pool("docspool"))
    assert created.status_code == 201, created.text
    got = rest.request("GET", "/pools/docspool")
    assert got.status_code == 200 and got.json()["vmSize"] == "STANDARD_A1_v2"
    # Mixed-case query names are lower-cased in the documented canonical resource.
    listed = rest.request("GET", "/pools", query="$filter=id%20eq%20'docspool'&maxResults=1&timeout=30")
    assert listed.status_code == 200, listed.text
    assert [p["id"] for p in listed.json()["value"]] == ["docspool"]
    # curl -X DELETE sends no Content-Length; the documented string has an empty Content-Length line.
    deleted = rest.request("DELETE", "/pools/docspool")
    assert deleted.status_code == 202, deleted.text


def test_date_header_is_signed_empty_when_ocp_date_is_present(rest):
    # Documented: "If you set ocp-date, construct the signature with an empty value for the Date header." HTTP
    # stacks and proxies that add Date by themselves are the reason ocp-date exists.
    now = rfc1123_now()
    response = rest.request("GET", "/jobs", headers={"Date": now})
    assert response.status_code == 200, response.text


def test_date_header_alone_authenticates(rest):
    url = rest.url("/jobs")
    headers = {"Date": rfc1123_now()}
    headers["Authorization"] = f"SharedKey {rest.account}:" + signature(
        rest.key, string_to_sign("GET", url, headers, rest.account))
    assert httpx.get(url, headers=headers, timeout=10).status_code == 200


def test_repeated_query_parameter_values_are_sorted_and_joined(rest):
    response = rest.request("GET", "/jobs", query="timeout=30&timeout=20")
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("tamper", ["key", "path", "query", "body"])
def test_documented_signature_still_detects_tampering(rest, tamper):
    body = _pool("tampered")
    if tamper == "key":
        wrong = DocsFormClient(rest.base_url, rest.account, base64.b64encode(b"x" * 64).decode())
        response = wrong.request("POST", "/pools", json_body=body)
    else:
        url = rest.url("/pools", "timeout=30")
        payload = json.dumps(body).encode()
        headers = rest.signed_headers("POST", url, payload)
        if tamper == "path":
            url = url.replace("/pools", "/jobs")
        elif tamper == "query":
            url = url.replace("timeout=30", "timeout=31")
        else:  # Shared Key signs the body's length, not its bytes (no Content-MD5 is sent)
            payload = payload.replace(b"tampered", b"tampered-longer")
            headers["Content-Length"] = str(len(payload))
        response = httpx.post(url, headers=headers, content=payload, timeout=10)
    assert response.status_code == 403
    error = response.json()
    assert error["code"] == "AuthenticationFailed"
    assert error["odata.metadata"].endswith("Container.errors/@Element")
    assert rest.request("GET", "/pools/tampered").status_code == 404


def test_azure_batch_4_path_signature_with_encoded_slash(rest):
    # azure-batch 4.x sends a task file path as .../files/wd%2Fout.txt but signs it with "/" (its SharedKeyAuth
    # replaces %2F and %5C before signing): the request must authenticate and reach the handler (404 here).
    from devstack.batch_emulator.auth.shared_key import sign, string_to_sign as sdk_string_to_sign
    path = "/jobs/nojob/tasks/t/files/wd%2Fout.txt"
    query = f"api-version={rest.api_version}"
    headers = {"ocp-date": rfc1123_now()}
    text = sdk_string_to_sign(rest.account, "GET", path.replace("%2F", "/"), query, headers)
    headers["Authorization"] = f"SharedKey {rest.account}:{sign(base64.b64decode(rest.key), text)}"
    response = httpx.get(f"{rest.base_url}{path}?{query}", headers=headers, timeout=10)
    assert response.status_code == 404, response.text
    assert response.json()["code"] == "JobNotFound"
