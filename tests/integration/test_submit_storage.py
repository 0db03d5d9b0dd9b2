"""The submit path's storage side on real Azurite: the trigger adapter's one properties call,
the insert-only ledger (lazy table creation), and the output containers."""
from __future__ import annotations

import pytest
from azure.data.tables import TableClient
from azure.storage.blob import BlobClient, BlobServiceClient

from shared.ledger import LedgerRow, State, Ledger
from shared.trigger import blob_version
from tests.app.stack import CountingTransport, unique

pytestmark = pytest.mark.integration


def test_blob_version_from_one_properties_call(storage_connection_string, stereo_clip):
    container = unique("in")
    service = BlobServiceClient.from_connection_string(storage_connection_string)
    service.create_container(container)
    name = "a b/ü;rm -rf.mp4"
    service.get_blob_client(container, name).upload_blob(stereo_clip.read_bytes(),
                                                          content_type="video/mp4")
    transport = CountingTransport()
    client = BlobClient.from_connection_string(storage_connection_string, container, name, transport=transport)
    version = blob_version(client)
    assert (version.container, version.name, version.size) == (container, name, stereo_clip.stat().st_size)
    assert version.etag and version.content_type == "video/mp4"
    assert [(m, p.rsplit("/", 1)[0]) for _, m, p in transport.requests] == [("HEAD", f"/devstoreaccount1/{container}/a%20b")]


def test_deleted_blob_gives_no_etag(storage_connection_string):
    container = unique("in")
    BlobServiceClient.from_connection_string(storage_connection_string).create_container(container)
    client = BlobClient.from_connection_string(storage_connection_string, container, "gone.mp4")
    version = blob_version(client)
    assert version.etag is None and version.name == "gone.mp4"


def row(key: str, state: State = State.QUEUED) -> LedgerRow:
    from datetime import datetime, timezone
    return LedgerRow(job_id="jobs", row_key=key, state=state, input_container="input", input_name=f"{key}.mp4",
                     input_etag='"0x1"', input_size=21 * 1024**3, input_content_type="video/mp4",
                     output_name=f"{key}.mp3", task_id=key, recorded_at=datetime.now(timezone.utc))


def test_ledger_creates_its_table_lazily_and_is_insert_only(storage_connection_string):
    table = TableClient.from_connection_string(storage_connection_string, table_name=unique("ledger"))
    ledger = Ledger(table, "jobs")
    assert ledger.record(row("clip-abc")) is True          # table did not exist yet
    # The reconciler has moved the row on; a duplicate trigger must not drag it back to queued.
    table.update_entity({"PartitionKey": "jobs", "RowKey": "clip-abc", "State": "succeeded"})
    assert ledger.record(row("clip-abc")) is False
    entity = table.get_entity("jobs", "clip-abc")
    assert entity["State"] == "succeeded" and entity["InputSize"].value == 21 * 1024**3
    assert entity["InputName"] == "clip-abc.mp4" and entity["TaskId"] == "clip-abc"
    # Found by name prefix, as a person would in Storage Explorer.
    found = list(table.query_entities("PartitionKey eq 'jobs' and RowKey ge 'clip' and RowKey lt 'clip~'"))
    assert [e["RowKey"] for e in found] == ["clip-abc"]
