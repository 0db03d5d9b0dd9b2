"""The app's own autoscale formula (shared/pool_spec.py) against the service's sample lag (issue 16).

Samples arrive about a minute late (docs: "It takes approximately one minute for samples to propagate"). The
formula before issue 16 judged the last 3 minutes with a 70 % threshold: in Azure it sees ~4 of 6 samples
there, so it always fell back to the last sample alone. The re-tuned one judges the 3 minutes before the lag.
docs/scaling.md "The formula against the sample lag" explains the choice.
"""
from __future__ import annotations

import re
import time
from datetime import timedelta

from azure.batch import models as m

from devstack.formula_replay import BURST, FORMULA_BEFORE_ISSUE_16, replay
from shared.pool_spec import autoscale_formula
from shared.settings import NodePriority

from .helpers import job_options, pool_options, shell_task, wait_for, wait_task_completed

SLOTS, MAX_NODES = 2, 8
BEFORE = FORMULA_BEFORE_ISSUE_16.format(slots=SLOTS, max_nodes=MAX_NODES)
AFTER = autoscale_formula(SLOTS, MAX_NODES, NodePriority.DEDICATED)
BURST_MINUTES = (4.0, 12.0)  # the burst is visible (one minute late) from minute 4 until its queue is empty


def _during_burst(steps):
    return [s for s in steps if BURST_MINUTES[0] <= s.minute <= BURST_MINUTES[1]]


def test_before_the_retune_the_lagged_window_never_reaches_70_percent_and_targets_follow_one_sample():
    steps = replay(BEFORE, BURST)
    assert {s.value("samplePercent") for s in steps[6:]} == {"66.6667"}  # 4 of 6 samples, every time
    targets = [s.target for s in _during_burst(steps)]
    assert min(targets) <= 3 < max(targets) == 6  # shrinks as each wave arrives: the last sample decides


def test_after_the_retune_the_window_is_whole_and_the_burst_keeps_its_nodes():
    steps = replay(AFTER, BURST)
    assert {s.value("samplePercent") for s in steps[7:]} == {"100"}  # 6 of 6 in (now-4 min, now-1 min]
    assert {s.target for s in _during_burst(steps)} == {6}           # ceil(12 / 2), held through the waves
    assert steps[-1].target == 0                                      # and back to zero after the window
    assert [s.target for s in steps[:6]] == [0] * 6                   # an empty pool's history never pins a node


def test_after_the_retune_a_new_pool_follows_the_freshest_sample():
    steps = replay(AFTER, [0, 0, 6, 6])
    assert [s.target for s in steps] == [0, 0, 0, 0]  # nothing visible yet: the 6 at 1 min shows at 2 min
    steps = replay(AFTER, [0, 0, 6, 6, 6])
    assert steps[-1].target == 3 and float(steps[-1].value("samplePercent")) < 70  # thin window: last sample


def test_larger_lag_up_to_90_seconds_still_fills_the_window():
    steps = replay(AFTER, BURST, lag=timedelta(seconds=90))
    assert {s.value("samplePercent") for s in steps[8:]} == {"83.3333"}
    assert {s.target for s in steps if 4.5 <= s.minute <= 12.5} == {6}


def _values(results: str) -> dict[str, float]:
    return {k: float(v) for k, v in re.findall(r"(\w+)=([0-9.eE+-]+)(?:;|$)", results)}


def test_the_formula_through_the_lagged_emulator_on_a_compressed_clock(batch_emulator_factory):
    # One minute becomes one second: samples every 0.5 s (the service's 30 s), visible after the emulator's
    # default two periods (1 s, the docs' minute); the formula text is the app's with TimeInterval_Second.
    emu = batch_emulator_factory(autoscale_min_interval=timedelta(seconds=1), sample_period=timedelta(seconds=0.5),
                                 enable_autoscale_min_gap=timedelta(seconds=0), scheduler_tick=0.05)
    client = emu.client()
    compressed = autoscale_formula(SLOTS, MAX_NODES, NodePriority.DEDICATED, minute="TimeInterval_Second")
    before = BEFORE.replace("TimeInterval_Minute", "TimeInterval_Second")
    client.create_pool(pool_options("app", enable_auto_scale=True, auto_scale_formula=compressed,
                                    task_slots_per_node=SLOTS,
                                    auto_scale_evaluation_interval=timedelta(seconds=1)))
    client.create_job(job_options("j", "app"))
    time.sleep(3)  # an idle history first, as in Azure
    client.create_tasks("j", [shell_task(f"t{i}", "sleep 6") for i in range(6)])
    pool = wait_for(lambda: client.get_pool("app"), lambda p: p.target_dedicated_nodes == 3, timeout=20,
                    what="the burst's 3 nodes")
    time.sleep(2.5)  # the burst fills the lagged window
    now_after = client.evaluate_pool_auto_scale("app", m.BatchPoolEvaluateAutoScaleOptions(
        auto_scale_formula=compressed))
    now_before = client.evaluate_pool_auto_scale("app", m.BatchPoolEvaluateAutoScaleOptions(
        auto_scale_formula=before))
    assert now_after.error is None and now_before.error is None
    after, old = _values(now_after.results), _values(now_before.results)
    assert after["samplePercent"] >= 70 and after["windowMax"] == 6   # judged on its window
    assert old["samplePercent"] < 70                                  # the old one is back to its last sample
    for i in range(6):
        wait_task_completed(client, "j", f"t{i}", timeout=60)
    pool = wait_for(lambda: client.get_pool("app"), lambda p: p.target_dedicated_nodes == 0, timeout=30,
                    what="back to zero")
    assert pool.auto_scale_run.error is None
