"""`status pool` says in words why the pool has no nodes: quota, allocation, start task (issue 17)."""
from __future__ import annotations

import io
import json

from ops import pool_advice
from ops.rendering import Output, show_pool
from ops.reports import PoolReport

POOL = {"state": "active", "allocation_state": "steady", "allocation_state_since": "2026-12-02T07:00:00+00:00",
        "vm_size": "standard_d2ds_v5", "task_slots_per_node": 2, "autoscale_enabled": False,
        "autoscale_interval": None, "last_autoscale_run": None, "current_dedicated_nodes": 0,
        "target_dedicated_nodes": 2, "current_low_priority_nodes": 0, "target_low_priority_nodes": 0,
        "resize_errors": ["AccountCoreQuotaReached: The specified account has reached core quota"]}


def report(pool=POOL, nodes=None) -> PoolReport:
    return PoolReport(pool_id="ffmpeg-pool", job_id="ffmpeg-jobs", pool=pool, node_counts=nodes,
                      task_counts={"active": 3}, task_slot_counts=None, status_rows=[])


def test_quota_error_in_words_with_what_to_do():
    (line,) = pool_advice.explain(POOL, None)
    assert line.startswith("AccountCoreQuotaReached: the Batch account has no dedicated cores left for "
                           "standard_d2ds_v5's VM family")
    assert "uploads stay queued" in line and "Request quota increase" in line and "POOL_MAX_NODES" in line


def test_spot_allocation_and_unknown_codes():
    pool = {**POOL, "resize_errors": ["AccountLowPriorityCoreQuotaReached: x", "AllocationFailed: y",
                                      "SomethingNew: the service's own words"]}
    lines = pool_advice.explain(pool, None)
    assert "low-priority (Spot) cores" in lines[0] and "USE_SPOT false" in lines[0]
    assert "could not allocate standard_d2ds_v5 nodes" in lines[1]
    assert lines[2] == "SomethingNew: the pool could not resize (the service's own words)"


def test_nodes_in_bad_states_and_a_healthy_pool():
    lines = pool_advice.explain({**POOL, "resize_errors": []},
                                {"dedicated": {"start_task_failed": 2, "total": 2}, "low_priority": {"total": 0}})
    assert lines == [pool_advice._NODE_STATES["start_task_failed"].format(n=2, kind="dedicated")]
    assert pool_advice.explain({**POOL, "resize_errors": []}, {"dedicated": {"idle": 1, "total": 1}}) == []
    assert pool_advice.explain(None, None) == []


def test_status_pool_shows_it_as_text_and_json():
    text = io.StringIO()
    show_pool(Output(text, as_json=False), report())
    assert "what it means" in text.getvalue() and "no dedicated cores left" in text.getvalue()
    raw = io.StringIO()
    show_pool(Output(raw, as_json=True), report())
    problems = json.loads(raw.getvalue())["problems"]
    assert len(problems) == 1 and problems[0].startswith("AccountCoreQuotaReached: the Batch account")
