"""Node access: one-blob read SAS, write-only container SAS, short-lived; delegation key cached."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

from azure.core.credentials import AccessToken
from azure.storage.blob import BlobServiceClient, UserDelegationKey

from devstack.azurite import ACCOUNT_KEY, ACCOUNT_NAME
from shared.access import Containers, PoolIdentityAccess, SasAccess

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
CONTAINERS = Containers(output="output", logs="logs")


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def key_service() -> BlobServiceClient:
    return BlobServiceClient(f"http://127.0.0.1:1/{ACCOUNT_NAME}",
                             credential={"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY})


def test_account_key_sas_scopes():
    access = SasAccess(key_service(), CONTAINERS, timedelta(minutes=240), clock=lambda: NOW)
    result = access.for_blob("input", "a b/ü;x.mp4")
    assert urlsplit(result.input_url).path == f"/{ACCOUNT_NAME}/input/a%20b/%C3%BC%3Bx.mp4"
    read = query(result.input_url)
    assert read["sr"] == "b" and read["sp"] == "r" and read["se"] == "2026-11-25T16:00:00Z"
    assert "st" not in read  # no start time: immune to clock skew
    for url, container in ((result.output_container_url, "output"), (result.logs_container_url, "logs")):
        assert urlsplit(url).path == f"/{ACCOUNT_NAME}/{container}"
        q = query(url)
        assert q["sr"] == "c" and q["sp"] == "cw" and q["se"] == "2026-11-25T16:00:00Z"
    assert result.identity_resource_id is None


class _Token:
    def get_token(self, *scopes, **kwargs):
        return AccessToken("t", 2**31)


def test_user_delegation_key_is_fetched_once_and_renewed_before_expiry(monkeypatch):
    service = BlobServiceClient("https://media.blob.core.chinacloudapi.cn", credential=_Token())
    clock = {"now": NOW}
    calls = []

    def fake_key(key_start_time, key_expiry_time, **kwargs):
        calls.append((key_start_time, key_expiry_time))
        key = UserDelegationKey()
        key.signed_oid, key.signed_tid, key.signed_service, key.signed_version = "oid", "tid", "b", "2025-11-05"
        key.signed_start = key_start_time.strftime("%Y-%m-%dT%H:%M:%SZ")
        key.signed_expiry = key_expiry_time.strftime("%Y-%m-%dT%H:%M:%SZ")
        key.value = "a2V5a2V5a2V5a2V5"
        return key

    monkeypatch.setattr(service, "get_user_delegation_key", fake_key)
    access = SasAccess(service, CONTAINERS, timedelta(minutes=240), clock=lambda: clock["now"])
    first = access.for_blob("input", "a.mp4")
    access.for_blob("input", "b.mp4")
    assert len(calls) == 1
    q = query(first.input_url)
    assert q["skoid"] == "oid" and q["sp"] == "r" and q["spr"] == "https"
    clock["now"] = NOW + timedelta(hours=20)   # the SAS would now outlive the 24 h key
    access.for_blob("input", "c.mp4")
    assert len(calls) == 2


def test_pool_identity_urls_carry_no_secret():
    access = PoolIdentityAccess(key_service(), CONTAINERS, "/subscriptions/s/uami")
    result = access.for_blob("input", "a.mp4")
    assert "?" not in result.input_url + result.output_container_url + result.logs_container_url
    assert result.identity_resource_id == "/subscriptions/s/uami"


VERSION = "2026-11-25T11:59:58.1234567Z"


def test_a_version_id_pins_the_input_url_and_its_sas_to_that_version():
    access = SasAccess(key_service(), CONTAINERS, timedelta(minutes=240), clock=lambda: NOW)
    read = query(access.for_blob("input", "a.mp4", VERSION).input_url)
    # sr=bv: the signature covers this version only; versionid: what the node downloads.
    assert read["versionid"] == VERSION and read["sr"] == "bv" and read["sp"] == "r"
    unpinned = query(access.for_blob("input", "a.mp4").input_url)
    assert "versionid" not in unpinned and unpinned["sr"] == "b"


def test_pool_identity_url_names_the_version_and_no_secret():
    access = PoolIdentityAccess(key_service(), CONTAINERS, "/subscriptions/s/uami")
    url = access.for_blob("input", "a.mp4", VERSION).input_url
    assert query(url) == {"versionid": VERSION} and "sig" not in url
