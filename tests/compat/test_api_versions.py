"""api-version handling for clients the emulator was not built with: every version a released client sends is
accepted, a well-formed dated version nobody here has seen is accepted, nonsense gets a clear OData 400."""
from __future__ import annotations

from datetime import date

import pytest

from devstack.batch_emulator import errors
from devstack.batch_emulator.wire import check_api_version
from devstack.compat.rest import DocsFormClient

# What released clients send (read from each package's generated client).
CLIENT_VERSIONS = {
    "azure-batch 4.1.3 (ffmpeg tutorial)": "2018-03-01.6.1",
    "azure-batch 5.1.1": "2018-08-01.7.0",
    "azure-batch 6.0.0": "2018-12-01.8.0",
    "azure-batch 10.0.0": "2020-09-01.12.0",
    "azure-batch 12.0.0": "2022-01-01.15.0",
    "azure-batch 13.0.0": "2022-10-01.16.0",
    "azure-batch 14.2.0 / 15.0.0b1 (az CLI 2.91)": "2024-02-01.19.0",
    "azure-batch 15.0.0b2 / 15.1.0b1": "2024-07-01.20.0",
    "azure-batch 15.1.0": "2025-06-01",
}


@pytest.fixture(scope="module")
def rest(batch_emulator_module) -> DocsFormClient:
    emu = batch_emulator_module
    return DocsFormClient(emu.url, emu.account_name, emu.account_key)


@pytest.mark.parametrize("client", sorted(CLIENT_VERSIONS))
def test_versions_released_clients_send_are_accepted(rest, client):
    rest.api_version = CLIENT_VERSIONS[client]
    response = rest.request("GET", "/jobs")
    assert response.status_code == 200, response.text


def test_an_unseen_but_plausible_dated_version_is_accepted():
    # A newer SDK than this emulator knows (or a preview date in between) must not be locked out.
    today = date(2026, 11, 25)
    assert check_api_version("2026-10-01", today) == "2026-10-01"
    assert check_api_version("2025-12-01.21.0", today) == "2025-12-01.21.0"
    assert check_api_version("2019-06-01.9.0", today) == "2019-06-01.9.0"


@pytest.mark.parametrize("version, code", [
    ("", "MissingRequiredQueryParameter"),
    ("latest", "InvalidQueryParameterValue"),
    ("2024-13-45", "InvalidQueryParameterValue"),
    ("2024-02-30.19.0", "InvalidQueryParameterValue"),
    ("2024-02-01.19", "InvalidQueryParameterValue"),
    ("v2024-02-01", "InvalidQueryParameterValue"),
    ("2017-09-01.6.0", "UnsupportedRequestVersion"),   # removed (Batch API status page)
    ("2014-01-01.1.0", "UnsupportedRequestVersion"),
    ("2999-01-01", "UnsupportedRequestVersion"),       # dated after today: cannot have been published
])
def test_nonsense_versions_get_a_clear_odata_400(rest, version, code):
    query = f"api-version={version}" if version else ""
    response = rest.request("GET", "/jobs", url=f"{rest.base_url}/jobs?{query}".rstrip("?"))
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == code
    assert body["odata.metadata"].endswith("#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element")
    assert body["message"]["lang"] == "en-US" and "RequestId:" in body["message"]["value"]
    if version:
        assert {"key": "QueryParameterValue", "value": version} in body["values"]


def test_future_dates_are_judged_against_the_clock():
    with pytest.raises(errors.BatchError) as exc:
        check_api_version("2026-11-26", date(2026, 11, 25))
    assert exc.value.code == "UnsupportedRequestVersion"
    assert check_api_version("2026-11-25", date(2026, 11, 25)) == "2026-11-25"
