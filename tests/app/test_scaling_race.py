"""An upload racing the timer's scale-to-zero never strands a task: every interleaving, deterministically.

Each scenario starts the pool in a state where the timer (or the formula) is taking it to zero, or has
just done so. A baseline run records every point of each tick at which Batch is called; then, for each
tick and each point - before the task-count read, between reads, between every pool operation - and
for several instants between ticks, the scenario is replayed with one upload injected exactly there.
Every replay must start the task within two ticks plus allocation and boot, never leave queued work
behind a zero-node target for more than two ticks, and never take a node from a running task (the
simulator raises if it would).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest

from shared.scaling import Allocation, ScalingMemory, ScalingPolicy
from shared.pool_scaler import scale_pool
from devstack.pool_sim import T0, SimConfig, SimControl, SimNode, SimPool

TICK = 60.0
POLICY = ScalingPolicy(max_nodes=4, idle_grace=timedelta(seconds=120), autoscale_handback=timedelta(seconds=300))
CFG = SimConfig()
# Worst case: uploaded just after a tick read the counts -> next tick (60 s) -> stop/resize -> allocation + boot.
DEADLINE = 2 * TICK + CFG.alloc_delay.total_seconds() + CFG.boot_delay.total_seconds() + 10
TICKS = 22  # the last ones let the work drain and the pool park again


def _scenario_autoscale_pool_idle_past_grace():
    pool = SimPool(CFG, autoscale=True, nodes=2)
    return pool, ScalingMemory(idle_since=T0 - timedelta(seconds=200))


def _scenario_manual_pool_idle_past_grace():
    pool = SimPool(CFG, autoscale=False, nodes=2)
    return pool, ScalingMemory(idle_since=T0 - timedelta(seconds=200), last_pool_change=T0 - timedelta(hours=1))


def _scenario_manual_shrink_in_flight():
    # The timer already asked for 0; one node still finishes a task (taskcompletion), so the resize runs.
    pool = SimPool(CFG, autoscale=False, nodes=2)
    task = pool.add_task()
    pool.tasks[task].started_at = T0 - timedelta(seconds=10)
    busy = pool.nodes[0]
    busy.task, busy.task_done_at = task, T0 + timedelta(minutes=8)  # a long conversion
    pool.nodes[1].task = pool.nodes[1].task_done_at = None
    pool.target, pool.allocation = 0, Allocation.RESIZING
    pool._resize_progress()
    return pool, ScalingMemory(last_pool_change=T0 - timedelta(seconds=5))


def _scenario_parked_about_to_hand_back():
    pool = SimPool(CFG, autoscale=False, nodes=0)
    return pool, ScalingMemory(idle_since=T0 - timedelta(hours=1), last_pool_change=T0 - timedelta(seconds=290))


def _scenario_autoscale_at_rest_on_zero():
    pool = SimPool(CFG, autoscale=True, nodes=0)
    pool.last_enable = T0 - timedelta(minutes=10)
    return pool, ScalingMemory(idle_since=T0 - timedelta(hours=1))


def _scenario_formula_shrinking_to_zero():
    pool = SimPool(CFG, autoscale=True, nodes=1)
    task = pool.add_task()
    pool.tasks[task].started_at = T0 - timedelta(seconds=10)
    pool.nodes[0].task, pool.nodes[0].task_done_at = task, T0 + timedelta(minutes=8)
    pool.target, pool.allocation = 0, Allocation.RESIZING
    pool._resize_progress()
    return pool, ScalingMemory()


SCENARIOS = {
    "autoscale_pool_idle_past_grace": _scenario_autoscale_pool_idle_past_grace,
    "manual_pool_idle_past_grace": _scenario_manual_pool_idle_past_grace,
    "manual_shrink_in_flight": _scenario_manual_shrink_in_flight,
    "parked_about_to_hand_back": _scenario_parked_about_to_hand_back,
    "autoscale_at_rest_on_zero": _scenario_autoscale_at_rest_on_zero,
    "formula_shrinking_to_zero": _scenario_formula_shrinking_to_zero,
}


@dataclass(frozen=True)
class At:
    tick: int
    point: int | None = None    # hook index inside the tick
    offset: float | None = None  # seconds after the tick's end (between ticks)


@dataclass
class Run:
    pool: SimPool
    hook_points: list[int]
    upload_task: str | None
    upload_time: object
    targets_after_tick: list[int]
    started_after_tick: list[bool]
    decisions: list[str]


def simulate(scenario, upload: At | None) -> Run:
    pool, memory = scenario()
    hook_points: list[int] = []
    uploaded: dict = {}
    targets: list[int] = []
    started: list[bool] = []
    decisions: list[str] = []
    for i in range(TICKS):
        start = T0 + timedelta(seconds=i * TICK)
        if pool.now < start:
            pool.advance((start - pool.now).total_seconds())
        point = 0

        def hook():
            nonlocal point
            if upload == At(i, point) and "task" not in uploaded:
                uploaded["task"], uploaded["time"] = pool.add_task(), pool.now
            point += 1

        hook()                      # before the count read
        work = pool.work()
        hook()                      # after it
        outcome = scale_pool(SimControl(pool, hook), work, memory, POLICY, clock=lambda: pool.now,
                             sleep=pool.advance)
        memory = outcome.memory
        hook_points.append(point)
        targets.append(pool.target)
        started.append("task" in uploaded and pool.tasks[uploaded["task"]].started_at is not None)
        decisions.append(">".join(d.reason.value for d in outcome.decisions))
        if upload is not None and upload.offset is not None and upload.tick == i and "task" not in uploaded:
            pool.advance(upload.offset)
            uploaded["task"], uploaded["time"] = pool.add_task(), pool.now
    return Run(pool, hook_points, uploaded.get("task"), uploaded.get("time"), targets, started, decisions)


def _uploads(scenario) -> list[At]:
    base = simulate(scenario, None)
    points = [At(i, k) for i, n in enumerate(base.hook_points[:6]) for k in range(n)]
    between = [At(i, offset=o) for i in range(6) for o in (0.5, 15.0, 30.5, 59.0)]
    return points + between


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_baseline_reaches_zero_nodes_and_autoscale_at_rest(name):
    run = simulate(SCENARIOS[name], None)
    assert run.pool.target == 0 and not run.pool.nodes
    assert run.pool.autoscale, f"autoscale not handed back: {run.decisions}"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_upload_at_every_interleaving_gets_a_node(name):
    scenario = SCENARIOS[name]
    uploads = _uploads(scenario)
    assert len(uploads) > 30  # the enumeration is real
    for at in uploads:
        run = simulate(scenario, at)
        task = run.pool.tasks[run.upload_task]
        assert task.started_at is not None, f"{name} {at}: never started; decisions {run.decisions}"
        waited = (task.started_at - run.upload_time).total_seconds()
        assert waited <= DEADLINE, f"{name} {at}: waited {waited:.0f}s; decisions {run.decisions}"
        assert run.pool.longest_strand <= 2 * TICK, f"{name} {at}: stranded {run.pool.longest_strand:.0f}s"
        assert task.done_at is not None
        # and the pool still goes back to zero afterwards
        assert run.pool.target == 0


def test_first_tick_after_an_upload_gives_the_pool_a_target():
    """Tighter form of the claim: by the end of the first whole tick after the upload, the task runs or
    the pool has a non-zero target (stop-resize settles within the tick here)."""
    for name, scenario in SCENARIOS.items():
        base = simulate(scenario, None)
        for tick in range(4):
            for k in range(base.hook_points[tick]):
                run = simulate(scenario, At(tick, k))
                nxt = tick + 1
                assert run.started_after_tick[nxt] or run.targets_after_tick[nxt] >= 1, \
                    (name, tick, k, run.decisions[:nxt + 1])


def test_without_the_timer_a_zero_pool_wakes_only_at_the_formula_interval():
    """Why the timer wakes the pool: autoscale alone leaves an upload waiting for the next evaluation."""
    pool = SimPool(CFG, autoscale=True, nodes=0)
    pool.advance(30)
    task = pool.add_task()
    pool.advance(900)
    waited = (pool.tasks[task].started_at - T0).total_seconds() - 30
    assert waited > 2 * TICK + CFG.alloc_delay.total_seconds() + CFG.boot_delay.total_seconds()
    assert pool.tasks[task].done_at is not None  # but it is not stranded forever either (backstop)


def test_nodes_with_running_tasks_are_never_removed_by_scale_to_zero():
    pool = SimPool(CFG, autoscale=True, nodes=2)
    task = pool.add_task()
    assert pool.tasks[task].started_at is not None
    memory = ScalingMemory(idle_since=T0 - timedelta(hours=1))
    # a (stale) idle view: the timer believes nothing runs and shrinks to zero
    from shared.scaling import WorkSnapshot
    outcome = scale_pool(SimControl(pool), WorkSnapshot(0, 0), memory, POLICY, clock=lambda: pool.now,
                         sleep=pool.advance)
    assert [a.kind for a in outcome.executed] == ["disable_autoscale", "resize"]
    pool.advance(5)
    assert any(n.task == task for n in pool.nodes)  # busy node stays (taskcompletion)
    pool.advance(60)
    assert pool.tasks[task].done_at is not None and not pool.nodes
