"""Unit tests of the emulator's pure parts: settings, shared-key string to sign, stores, $filter, durations."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from devstack.batch_emulator import config, errors, odata, store
from devstack.batch_emulator.auth.shared_key import string_to_sign
from devstack.batch_emulator.timeutil import UNLIMITED_DURATION, format_duration, parse_duration, parse_iso


# --- settings ---------------------------------------------------------------------------------------------

def test_env_and_flags_build_the_config_flags_win():
    env = {"BATCH_EMULATOR_PORT": "12345", "BATCH_EMULATOR_NODE_START_DELAY": "0.5",
           "BATCH_EMULATOR_AUTOSCALE_MIN_INTERVAL": "10", "BATCH_EMULATOR_FAULT_OPERATIONS": "Task_Add, Pool_Get",
           "BATCH_EMULATOR_FAULT_RETRY_AFTER": "", "OTHER": "ignored"}
    cfg = config.from_args(["--port", "2000", "--in-memory"], environ=env)
    assert cfg.port == 2000 and cfg.data_dir is None
    assert cfg.node_start_delay == 0.5
    assert cfg.autoscale_min_interval == timedelta(seconds=10)
    assert cfg.faults.operations == ("Task_Add", "Pool_Get") and cfg.faults.retry_after is None


@pytest.mark.parametrize("name, value", [
    ("port", "70000"), ("node_start_delay", "-1"), ("fault_rate", "1.5"), ("fault_status", "404"),
    ("account_key", "not base64!"), ("account_name", "Bad_Name"), ("max_nodes_per_pool", "0"),
    ("allow_bearer", "maybe"), ("sample_period", "abc"),
])
def test_invalid_settings_name_the_setting(name, value):
    with pytest.raises(config.ConfigError) as exc:
        config.from_env({f"BATCH_EMULATOR_{name.upper()}": value})
    message = str(exc.value)
    assert name in message and f"BATCH_EMULATOR_{name.upper()}" in message


# --- shared key ---------------------------------------------------------------------------------------------

def test_string_to_sign_matches_the_captured_sdk_examples():
    # Examples captured from azure-batch 15.1.0 against a recomputing server (research notes).
    post = string_to_sign("acct", "POST", "/pools", "api-version=2025-06-01", {
        "content-length": "225", "content-type": "application/json; odata=minimalmetadata",
        "ocp-date": "Wed, 25 Nov 2026 12:40:04 GMT", "host": "x", "user-agent": "y"})
    assert post == ("POST\n\n\n225\n\napplication/json; odata=minimalmetadata\n\n\n\n\n\n\n"
                    "ocp-date:Wed, 25 Nov 2026 12:40:04 GMT\n/acct/pools\napi-version:2025-06-01")
    get = string_to_sign("acct", "GET", "/jobs/j/tasks",
                         "api-version=2025-06-01&maxresults=1&%24filter=state%20eq%20%27completed%27"
                         "&%24select=id%2Cstate%2CexecutionInfo", {"ocp-date": "D"})
    assert get == ("GET\n" + "\n" * 11 + "ocp-date:D\n/acct/jobs/j/tasks\n$filter:state eq 'completed'\n"
                   "$select:id,state,executionInfo\napi-version:2025-06-01\nmaxresults:1")
    # POST without a body signs content-length "0"
    assert string_to_sign("a", "POST", "/p", "", {"ocp-date": "D"}).startswith("POST\n\n\n0\n")


# --- stores -------------------------------------------------------------------------------------------------

@pytest.fixture(params=["memory", "sqlite"])
def any_store(request, tmp_path: Path):
    s = store.MemoryStore() if request.param == "memory" else store.SqliteStore(tmp_path / "s.db")
    yield s
    s.close()


def test_store_contract(any_store):
    s = any_store
    s.put(store.TASK, "j/b", {"v": 1}, parent="j")
    s.put_many(store.TASK, [("j/a", {"v": 2}, "j"), ("k/c", {"v": 3}, "k")])
    s.put(store.TASK, "j/b", {"v": 4}, parent="j")  # upsert keeps first-insertion order
    assert [(k, d["v"]) for k, _p, d in s.load(store.TASK)] == [("j/b", 4), ("j/a", 2), ("k/c", 3)]
    s.delete_children(store.TASK, "j")
    assert [k for k, _p, _d in s.load(store.TASK)] == ["k/c"]
    with s.batch():
        s.delete(store.TASK, "k/c")
    assert list(s.load(store.TASK)) == []


def test_sqlite_store_survives_reopen_and_rolls_back_failed_batches(tmp_path: Path):
    path = tmp_path / "state.db"
    s = store.SqliteStore(path)
    s.put(store.POOL, "p", {"doc": {"id": "p"}})
    with pytest.raises(RuntimeError):
        with s.batch():
            s.put(store.POOL, "q", {"doc": {"id": "q"}})
            raise RuntimeError("boom")
    s.close()
    reopened = store.SqliteStore(path)
    assert [k for k, _p, _d in reopened.load(store.POOL)] == ["p"]
    reopened.close()


# --- $filter ------------------------------------------------------------------------------------------------

TASK = {"id": "Clip-7", "state": "completed", "stateTransitionTime": "2024-05-02T10:00:00.000000Z",
        "creationTime": "2024-05-01T00:00:00.000000Z",
        "executionInfo": {"exitCode": 0, "result": "success", "endTime": "2024-05-02T10:00:00.000000Z"}}


@pytest.mark.parametrize("expr, expected", [
    ("state eq 'completed'", True),
    ("state eq 'COMPLETED'", True),
    ("state ne 'completed'", False),
    ("id eq 'clip-7'", True),
    ("startswith(id, 'clip')", True),
    ("stateTransitionTime ge DateTime'2024-05-02T10:00:00.0000000Z'", True),
    ("stateTransitionTime gt DateTime'2024-05-02T10:00:00Z'", False),
    ("creationTime lt DateTime'2024-05-01T00:00:01Z' and executionInfo/exitCode eq 0", True),
    ("(state eq 'active' or executionInfo/result eq 'success') and not (executionInfo/exitCode ne 0)", True),
    ("executionInfo/startTime gt DateTime'2000-01-01T00:00:00Z'", False),  # absent property never compares
    ("executionInfo/endTime le DateTime'2024-05-02T10:00:00Z'", True),
])
def test_task_filters(expr, expected):
    assert odata.compile_filter(expr, odata.TASK_FILTERS)(TASK) is expected


@pytest.mark.parametrize("expr", ["commandLine eq 'x'", "state lt 'a'", "id eq", "state eq 1",
                                  "stateTransitionTime gt DateTime'yesterday'", "endswith(id,'x')"])
def test_unsupported_filters_raise_invalid_query_parameter_value(expr):
    with pytest.raises(errors.BatchError) as exc:
        odata.compile_filter(expr, odata.TASK_FILTERS)
    assert exc.value.status == 400 and exc.value.code == "InvalidQueryParameterValue"
    assert dict(exc.value.values)["QueryParameterValue"] == expr


def test_paginate_resumes_after_position():
    rows = [(i, {"id": f"t{i}", "state": "active" if i % 2 else "completed"}) for i in range(1, 8)]
    pred = odata.compile_filter("state eq 'active'", odata.TASK_FILTERS)
    first = odata.paginate(rows, pred, None, 2, ("id",))
    assert first.items == [{"id": "t1"}, {"id": "t3"}] and first.next_position == 3
    second = odata.paginate(rows, pred, odata.decode_skiptoken(odata.encode_skiptoken(3)), 2, None)
    assert [d["id"] for d in second.items] == ["t5", "t7"] and second.next_position is None


# --- durations and instants -----------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("PT5M", timedelta(minutes=5)), ("PT05M00S", timedelta(minutes=5)), ("PT01M30.5S", timedelta(seconds=90.5)),
    ("P1DT2H", timedelta(days=1, hours=2)),
])
def test_durations_round_trip(text, value):
    assert parse_duration(text) == value
    assert parse_duration(format_duration(value)) == value
    assert format_duration(parse_duration(UNLIMITED_DURATION)) == UNLIMITED_DURATION


def test_seven_digit_fractions_parse():
    assert parse_iso("2024-01-01T00:00:00.1234567Z").microsecond == 123456
