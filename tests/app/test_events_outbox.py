"""The completion events' outbox in the ledger (real Azurite table) and the publisher's rules (fake sinks).

A row going final carries its marker in the same transaction; the publisher reads the marker range only, sends
each final row's event to every sink, and settles (records on the row, deletes the marker) only after all took
it; a row that is no longer final gets no event."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from azure.data.tables import TableServiceClient

from shared.events import completion_event
from shared.ledger import MAX_TRANSACTION, OUTBOX_PREFIX, Col, Ledger, LedgerRow, RowWrite, State
from shared.publish import EventPublisher, EventsNotPublished
from tests.app.stack import CountingTransport, unique

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=timezone.utc)
JOB = "jobs"


@pytest.fixture
def table(storage_connection_string):
    transport = CountingTransport()
    service = TableServiceClient.from_connection_string(storage_connection_string, transport=transport)
    client = service.get_table_client(unique("outbox"))
    return client, transport


def row(key: str, state: State, **kw) -> LedgerRow:
    return LedgerRow(job_id=JOB, row_key=key, state=state, input_container="input", input_name=f"{key}.mp4",
                     input_etag='"0x1"', input_size=10, input_content_type="video/mp4", output_name=f"{key}.mp3",
                     task_id=key, recorded_at=NOW, **kw)


def markers(client) -> list[str]:
    return sorted(e["RowKey"] for e in client.query_entities("PartitionKey eq @p and RowKey ge '~'",
                                                              parameters={"p": JOB}))


def test_rows_final_at_insert_carry_their_marker_queued_rows_do_not(table):
    client, _ = table
    ledger = Ledger(client, JOB, outbox=True)
    assert ledger.record(row("a", State.QUEUED))
    assert ledger.record(row("b", State.REJECTED, reason="bad"))
    assert ledger.record(row("c", State.SKIPPED, reason="not an .mp4 file"))
    assert not ledger.record(row("b", State.REJECTED, reason="bad"))   # a duplicate trigger: no second marker
    assert markers(client) == [OUTBOX_PREFIX + "b", OUTBOX_PREFIX + "c"]
    off = Ledger(client, JOB, outbox=False)       # EVENTS_SINK=none: no markers at all
    off.record(row("d", State.SKIPPED))
    assert markers(client) == [OUTBOX_PREFIX + "b", OUTBOX_PREFIX + "c"]


def test_a_full_batch_of_rows_going_final_splits_so_each_row_keeps_its_marker(table):
    client, transport = table
    ledger = Ledger(client, JOB, outbox=True)
    for i in range(MAX_TRANSACTION):
        ledger.record(row(f"r{i:03d}", State.QUEUED))
    stored = ledger.read_rows([f"r{i:03d}" for i in range(MAX_TRANSACTION)], scan=True)
    mark = transport.mark()
    writes = [RowWrite("update", {"PartitionKey": JOB, "RowKey": k, Col.STATE: "succeeded"}, s.etag)
              for k, s in stored.items()]
    assert ledger.commit(writes) is None
    batches = [r for r in transport.since(mark) if r[2].endswith("$batch")]
    assert len(batches) == 2          # 200 operations: two transactions, never a row without its marker
    assert len(markers(client)) == MAX_TRANSACTION
    page = ledger.outbox_page(30)
    assert len(page) == 30 and all(m.entity["RowKey"].startswith(OUTBOX_PREFIX) for m in page)
    # Non-final updates bring no marker.
    ledger.record(row("zz", State.QUEUED))
    zz = ledger.get("zz")
    assert ledger.commit([RowWrite("update", {"PartitionKey": JOB, "RowKey": "zz", Col.STATE: "running"}, zz.etag)]) \
        is None
    assert OUTBOX_PREFIX + "zz" not in markers(client)


class Sink:
    def __init__(self, name: str, fail: bool = False) -> None:
        self.name, self.fail, self.sent = name, fail, []

    def send(self, message):
        if self.fail:
            raise ConnectionError("sink down")
        self.sent.append(message)


def publisher(ledger: Ledger, *sinks: Sink) -> EventPublisher:
    return EventPublisher(ledger=ledger, sinks=sinks, source="/mp4tomp3/t", output_container="output",
                          output_size=lambda name: 1234, clock=lambda: NOW)


def test_publisher_sends_to_every_sink_then_settles_and_skips_rows_no_longer_final(table):
    client, _ = table
    ledger = Ledger(client, JOB, outbox=True)
    ledger.record(row("ok", State.QUEUED))
    stored = ledger.get("ok")
    ledger.commit([RowWrite("update", {"PartitionKey": JOB, "RowKey": "ok", Col.STATE: "succeeded",
                                       Col.OUTPUT_URL: "http://h/output/ok.mp3"}, stored.etag)])
    ledger.record(row("gone", State.REJECTED, reason="x"))
    # "gone" was run again since (back to queued): its marker must not become an event.
    again = ledger.get("gone")
    ledger.commit([RowWrite("update", {"PartitionKey": JOB, "RowKey": "gone", Col.STATE: "queued"}, again.etag)])
    queue, grid = Sink("queue"), Sink("eventgrid")
    result = publisher(ledger, queue, grid).run()
    assert (result.published, result.dropped) == (1, 1)
    assert [m["id"] for m in queue.sent] == [m["id"] for m in grid.sent] == ["ok.succeeded"]
    assert queue.sent[0]["data"]["output"]["size"] == 1234
    settled = ledger.get("ok").entity
    assert settled[Col.EVENT_ID] == "ok.succeeded" and settled[Col.EVENT_SINKS] == "queue,eventgrid"
    assert markers(client) == []


def test_a_failing_sink_leaves_the_marker_and_the_row_unmarked(table):
    client, _ = table
    ledger = Ledger(client, JOB, outbox=True)
    ledger.record(row("s", State.SKIPPED, reason="not an .mp4 file"))
    queue, grid = Sink("queue"), Sink("eventgrid", fail=True)
    with pytest.raises(EventsNotPublished):
        publisher(ledger, queue, grid).run()
    assert markers(client) == [OUTBOX_PREFIX + "s"] and Col.EVENT_ID not in ledger.get("s").entity
    grid.fail = False
    assert publisher(ledger, queue, grid).run().published == 1
    assert [m["id"] for m in queue.sent] == ["s.skipped", "s.skipped"]     # at least once, same id
    assert markers(client) == []


def test_event_shape_for_each_outcome():
    ok = completion_event(row("a", State.SUCCEEDED, options="mp3_bitrate=128k,mp3_loudnorm=true",
                              output_url="http://h/o/a.mp3"), source="/s", output_container="o", output_size=5,
                          now=NOW)
    assert ok["type"] == "mp4tomp3.conversion.succeeded" and ok["id"] == "a.succeeded"
    assert ok["subject"] == "/containers/input/blobs/a.mp4"
    assert ok["data"]["options"] == {"mp3_bitrate": "128k", "mp3_loudnorm": "true"}
    assert ok["data"]["output"] == {"container": "o", "name": "a.mp3", "url": "http://h/o/a.mp3", "size": 5}
    bad = completion_event(row("a", State.FAILED, reason="the input has no audio stream"), source="/s",
                           output_container="o", output_size=None, now=NOW)
    assert bad["id"] == "a.failed" != ok["id"] and bad["data"]["output"] is None
    assert bad["data"]["reason"] == "the input has no audio stream" and bad["time"] == "2026-12-02T08:00:00Z"


def test_event_grid_sink_sends_the_same_cloud_event():
    from shared.publish import EventGridSink

    class Client:
        sent = []

        def send(self, event):
            self.sent.append(event)

    message = completion_event(row("a", State.SKIPPED, reason="not an .mp4 file"), source="/mp4tomp3/x",
                               output_container="o", output_size=None, now=NOW)
    client = Client()
    EventGridSink(client).send(message)
    sent = client.sent[0]
    assert (sent.id, sent.source, sent.type, sent.subject) == ("a.skipped", "/mp4tomp3/x",
                                                               "mp4tomp3.conversion.skipped", message["subject"])
    assert sent.data == message["data"] and sent.time == NOW and sent.datacontenttype == "application/json"
