"""Task collections and listing: create_tasks chunking, per-task results, $filter/$select, paging via nextLink."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from azure.batch import models as m
from azure.core.exceptions import HttpResponseError

from .helpers import job_options, send, shell_task, signed


@pytest.fixture
def client(batch_emulator):
    c = batch_emulator.client()
    c.create_job(job_options("j", "no-pool-so-tasks-stay-active"))
    return c


def test_create_tasks_adds_1000_in_chunks_of_100_and_pages_listing(client, batch_emulator):
    tasks = [shell_task(f"task-{i:04d}", "true") for i in range(1000)]
    result = client.create_tasks("j", tasks)
    assert len(result.result_values) == 1000
    assert all(r.status == m.BatchTaskAddStatus.SUCCESS for r in result.result_values)
    assert batch_emulator.stats()["operations"]["Task_AddCollection"] == 10

    batch_emulator.admin("POST", "stats/reset")
    listed = list(client.list_tasks("j", max_results=300, select=["id", "state"]))
    assert len(listed) == 1000 and len({t.id for t in listed}) == 1000
    assert listed[0].url is None  # $select projected the page
    assert batch_emulator.stats()["operations"]["Task_List"] == 4  # 300+300+300+100

    filtered = list(client.list_tasks("j", filter="startswith(id,'task-09') or id eq 'task-0005'", max_results=50))
    assert sorted(t.id for t in filtered) == ["task-0005"] + [f"task-09{i:02d}" for i in range(100)]


def test_collection_reports_task_exists_and_invalid_tasks_per_task(client, batch_emulator):
    client.create_task("j", shell_task("dup", "true"))
    emu = batch_emulator
    body = json.dumps({"value": [
        {"id": "DUP", "commandLine": "true"},
        {"id": "fresh", "commandLine": "true"},
        {"id": "bad id", "commandLine": "true"},
        {"id": "nocmd"},
    ]}).encode()
    response = send(signed("POST", f"{emu.url}/jobs/j/addtaskcollection?api-version=2025-06-01",
                           emu.account_name, emu.account_key, body=body))
    assert response.status_code == 200
    results = {r["taskId"]: r for r in response.json()["value"]}
    assert results["fresh"]["status"] == "success" and results["fresh"]["eTag"].startswith("0x")
    assert results["fresh"]["location"].endswith("/jobs/j/tasks/fresh")
    assert results["DUP"]["status"] == "clienterror" and results["DUP"]["error"]["code"] == "TaskExists"
    assert results["bad id"]["error"]["code"] == "InvalidPropertyValue"
    assert results["nocmd"]["error"]["code"] == "MissingRequiredProperty"
    # The SDK helper treats TaskExists as success but raises for real client errors
    result = client.create_tasks("j", [shell_task("dup", "true"), shell_task("other", "true")])
    assert {r.task_id for r in result.result_values} == {"dup", "other"}


def test_collection_limits_are_413_request_body_too_large(client, batch_emulator):
    emu = batch_emulator
    too_many = json.dumps({"value": [{"id": f"t{i}", "commandLine": "true"} for i in range(101)]}).encode()
    r = send(signed("POST", f"{emu.url}/jobs/j/addtaskcollection?api-version=2025-06-01",
                    emu.account_name, emu.account_key, body=too_many))
    assert r.status_code == 413 and r.json()["code"] == "RequestBodyTooLarge"
    # ~1.2 MB of tasks in fewer than 100: the SDK halves its chunks on RequestBodyTooLarge and gets them in
    big = [shell_task(f"big{i}", "echo " + "x" * 12_000) for i in range(100)]
    result = client.create_tasks("j", big)
    assert len(result.result_values) == 100
    assert emu.stats()["byOperationStatus"]["Task_AddCollection"]["413"] >= 1


def test_filter_by_state_and_times_and_result(client):
    client.create_tasks("j", [shell_task(f"t{i}", "true") for i in range(6)])
    for i in (0, 2, 4):
        client.terminate_task("j", f"t{i}")
    done = list(client.list_tasks("j", filter="state eq 'completed'"))
    assert sorted(t.id for t in done) == ["t0", "t2", "t4"]
    assert len(list(client.list_tasks("j", filter="state ne 'completed'"))) == 3
    failed = list(client.list_tasks("j", filter="executionInfo/result eq 'failure' and state eq 'completed'"))
    assert len(failed) == 3
    watermark = max(t.state_transition_time for t in done)
    since = watermark.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")  # .NET "o": 7 digits
    newer = list(client.list_tasks("j", filter=f"stateTransitionTime ge DateTime'{since}'"))
    assert [t.id for t in newer] == [max(done, key=lambda t: t.state_transition_time).id]
    assert list(client.list_tasks("j", filter="creationTime gt DateTime'2100-01-01T00:00:00Z'")) == []


@pytest.mark.parametrize("bad", ["foo eq 1", "state gt 'active'", "state eq", "commandLine eq 'x'"])
def test_unsupported_filters_are_400_invalid_query_parameter_value(client, bad):
    with pytest.raises(HttpResponseError) as exc:
        list(client.list_tasks("j", filter=bad))
    assert exc.value.status_code == 400
    assert exc.value.error.code == "InvalidQueryParameterValue"
    details = {d.code: d.message for d in exc.value.error.details}
    assert details["QueryParameterName"] == "$filter" and details["QueryParameterValue"] == bad
    assert details["Reason"]


def test_maxresults_and_select_validation(client):
    with pytest.raises(HttpResponseError) as exc:
        list(client.list_tasks("j", max_results=1001))
    assert exc.value.status_code == 400
    with pytest.raises(HttpResponseError) as exc:
        list(client.list_tasks("j", select=["id", "nosuchproperty"]))
    assert exc.value.error.code == "InvalidQueryParameterValue"


def test_ten_thousand_tasks_list_in_pages_with_filter(client, batch_emulator):
    for start in range(0, 10_000, 1000):
        client.create_tasks("j", [shell_task(f"t{i:05d}", "true") for i in range(start, start + 1000)],
                            max_concurrency=4)
    ended = [f"t{i:05d}" for i in range(0, 10_000, 400)]  # 25 completed tasks spread over the job
    for task_id in ended:
        client.terminate_task("j", task_id)
    emu = batch_emulator
    # Raw first page: bounded size and an absolute nextLink carrying the query
    first = send(signed("GET", f"{emu.url}/jobs/j/tasks?api-version=2025-06-01&$filter=state%20eq%20%27active%27",
                        emu.account_name, emu.account_key))
    page = first.json()
    assert len(page["value"]) == 1000
    link = page["odata.nextLink"]
    assert link.startswith(f"{emu.url}/jobs/j/tasks?") and "%24filter=state+eq+%27active%27" in link

    emu.admin("POST", "stats/reset")
    ids = [t.id for t in client.list_tasks("j", filter="state eq 'active'", select=["id"])]
    assert len(ids) == len(set(ids)) == 10_000 - len(ended)
    assert set(ids).isdisjoint(ended)
    assert emu.stats()["operations"]["Task_List"] == 10
    emu.admin("POST", "stats/reset")
    completed = [t.id for t in client.list_tasks("j", filter="state eq 'completed'", max_results=10)]
    assert sorted(completed) == ended
    assert emu.stats()["operations"]["Task_List"] == 3
