"""The status row on a real table (Azurite): written only on change or heartbeat, counters survive conflicts."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from shared.ledger import STATUS_PARTITION
from shared.scaling import ScalingMemory
from shared.ledger import SUMMARY_ROW, Ledger
from shared.status import Increments, StatusRecord, StatusStore
from tests.app.stack import CountingTransport, unique

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
def table(storage_connection_string):
    name = unique("status")
    transport = CountingTransport()
    client = TableClient.from_connection_string(storage_connection_string, table_name=name, transport=transport)
    client.transport_counter = transport
    yield client
    TableServiceClient.from_connection_string(storage_connection_string).delete_table(name)


def test_first_save_creates_the_table_and_row(table):
    store = StatusStore(Ledger(table, "jobs"), heartbeat=timedelta(minutes=5))
    loaded = store.load()
    assert loaded.etag is None and loaded.record == StatusRecord()
    assert store.save(loaded, replace(loaded.record, PoolId="p", TasksActive=3), Increments(succeeded=2), T0)
    row = table.get_entity(STATUS_PARTITION, SUMMARY_ROW)
    assert row["PoolId"] == "p" and row["TasksActive"] == 3 and row["LedgerSucceeded"] == 2
    assert row["LastTickAt"] == T0 and row["LastChangeAt"] == T0


def test_unchanged_content_writes_only_on_heartbeat(table):
    store = StatusStore(Ledger(table, "jobs"), heartbeat=timedelta(minutes=5))
    store.save(store.load(), StatusRecord(PoolId="p", TasksActive=0), Increments(), T0)
    counter = table.transport_counter
    loaded = store.load()
    mark = counter.mark()
    assert not store.save(loaded, loaded.record, Increments(), T0 + timedelta(minutes=1))
    assert [r for r in counter.since(mark) if r[1] != "GET"] == []
    assert store.save(loaded, loaded.record, Increments(), T0 + timedelta(minutes=5))  # heartbeat
    row = table.get_entity(STATUS_PARTITION, SUMMARY_ROW)
    assert row["LastTickAt"] == T0 + timedelta(minutes=5) and row["LastChangeAt"] == T0


def test_cleared_fields_disappear_and_memory_round_trips(table):
    store = StatusStore(Ledger(table, "jobs"), heartbeat=timedelta(minutes=5))
    memory = ScalingMemory(idle_since=T0, last_pool_change=T0 + timedelta(seconds=1), replacements_in_window=2,
                           replacement_window_start=T0)
    store.save(store.load(), StatusRecord(PoolErrors="resize AllocationFailed: quota").with_memory(memory),
               Increments(), T0)
    loaded = store.load()
    assert loaded.record.memory == memory
    store.save(loaded, replace(loaded.record, PoolErrors=None).with_memory(ScalingMemory()), Increments(), T0)
    row = table.get_entity(STATUS_PARTITION, SUMMARY_ROW)
    assert "PoolErrors" not in row and "IdleSince" not in row


def test_conflicting_writer_keeps_both_counters(table):
    store = StatusStore(Ledger(table, "jobs"), heartbeat=timedelta(minutes=5))
    store.save(store.load(), StatusRecord(LedgerSucceeded=10), Increments(), T0)
    mine = store.load()
    theirs = store.load()
    store.save(theirs, theirs.record, Increments(succeeded=5), T0 + timedelta(seconds=1))  # lands first
    assert store.save(mine, mine.record, Increments(succeeded=1, failed=1), T0 + timedelta(seconds=2))
    row = table.get_entity(STATUS_PARTITION, SUMMARY_ROW)
    assert row["LedgerSucceeded"] == 16 and row["LedgerFailed"] == 1


def test_unknown_columns_added_by_an_operator_do_not_break_loading(table):
    store = StatusStore(Ledger(table, "jobs"), heartbeat=timedelta(minutes=5))
    store.save(store.load(), StatusRecord(PoolId="p"), Increments(), T0)
    table.update_entity({"PartitionKey": STATUS_PARTITION, "RowKey": SUMMARY_ROW, "Note": "hi"}, mode=UpdateMode.MERGE)
    assert store.load().record.PoolId == "p"
