"""Rules of the pure scaling decision (shared/scaling.py), one behaviour per test, simulated time."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shared.scaling import (
    Allocation,
    DisableAutoscale,
    EnableAutoscale,
    PoolSnapshot,
    Reason,
    ReleaseNodes,
    RemoveNodes,
    Resize,
    ScalingMemory,
    ScalingPolicy,
    StopResize,
    WorkSnapshot,
    decide,
    nodes_needed,
    remember,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
POLICY = ScalingPolicy(max_nodes=4, idle_grace=timedelta(seconds=120), autoscale_handback=timedelta(seconds=300))
IDLE = WorkSnapshot(active=0, running=0)


def pool(allocation=Allocation.STEADY, autoscale=True, current=0, target=0, slots=1, bad=(), idle=()):
    return PoolSnapshot(allocation=allocation, autoscale_enabled=autoscale, current_nodes=current,
                        target_nodes=target, task_slots_per_node=slots, bad_node_ids=tuple(bad),
                        idle_node_ids=tuple(idle))


def work(active=0, running=0):
    return WorkSnapshot(active=active, running=running)


@pytest.mark.parametrize("active,running,slots,expected", [
    (0, 0, 1, 0), (1, 0, 1, 1), (0, 1, 4, 1), (5, 0, 2, 3), (9, 9, 1, 4), (8, 0, 4, 2),
])
def test_nodes_needed_rounds_up_per_slot_and_caps(active, running, slots, expected):
    assert nodes_needed(work(active, running), slots, max_nodes=4) == expected


def test_wake_zero_node_autoscale_pool_disables_autoscale_then_resizes_to_need():
    d = decide(pool(autoscale=True), work(active=3), ScalingMemory(), POLICY, T0)
    assert d.reason is Reason.WAKE
    assert d.actions == (DisableAutoscale(), Resize(3))


def test_wake_manual_pool_resizes_without_touching_autoscale():
    d = decide(pool(autoscale=False), work(active=1), ScalingMemory(), POLICY, T0)
    assert d.actions == (Resize(1),)
    assert d.reason is Reason.WAKE


def test_shrink_to_zero_in_flight_is_stopped_when_work_appears():
    d = decide(pool(Allocation.RESIZING, autoscale=False, current=2, target=0), work(active=1),
               ScalingMemory(), POLICY, T0)
    assert d.actions == (StopResize(),)
    assert d.transitional


def test_formula_shrinking_to_zero_under_work_is_taken_over():
    d = decide(pool(Allocation.RESIZING, autoscale=True, current=1, target=0), work(active=1),
               ScalingMemory(), POLICY, T0)
    assert d.actions == (DisableAutoscale(), StopResize())


def test_resize_in_progress_with_work_is_left_alone():
    d = decide(pool(Allocation.RESIZING, autoscale=False, current=0, target=2), work(active=2),
               ScalingMemory(), POLICY, T0)
    assert d.actions == () and d.reason is Reason.WAIT_RESIZE


def test_stopping_waits():
    d = decide(pool(Allocation.STOPPING, autoscale=False, current=1, target=0), work(active=1),
               ScalingMemory(), POLICY, T0)
    assert d.actions == () and d.reason is Reason.WAIT_STOPPING


def test_idle_pool_keeps_nodes_during_grace_then_scales_to_zero_with_autoscale_disabled_first():
    p = pool(autoscale=True, current=2, target=2)
    first = decide(p, IDLE, ScalingMemory(), POLICY, T0)
    assert first.actions == () and first.memory.idle_since == T0
    during = decide(p, IDLE, first.memory, POLICY, T0 + timedelta(seconds=119))
    assert during.actions == ()
    after = decide(p, IDLE, during.memory, POLICY, T0 + timedelta(seconds=120))
    assert after.reason is Reason.SCALE_TO_ZERO
    assert after.actions == (DisableAutoscale(), Resize(0))


def test_any_pending_work_resets_the_idle_clock():
    p = pool(autoscale=False, current=1, target=1)
    m = decide(p, IDLE, ScalingMemory(), POLICY, T0).memory
    m = decide(p, work(running=1), m, POLICY, T0 + timedelta(seconds=100)).memory
    assert m.idle_since is None
    m = decide(p, IDLE, m, POLICY, T0 + timedelta(seconds=110)).memory
    late = decide(p, IDLE, m, POLICY, T0 + timedelta(seconds=200))
    assert late.actions == ()  # only 90 s idle since the last work
    assert decide(p, IDLE, m, POLICY, T0 + timedelta(seconds=230)).actions == (Resize(0),)


def test_never_scales_to_zero_while_a_task_runs_even_after_long_idle_memory():
    stale = ScalingMemory(idle_since=T0 - timedelta(hours=1))
    d = decide(pool(autoscale=True, current=1, target=1), work(running=1), stale, POLICY, T0)
    assert not any(isinstance(a, Resize) and a.target == 0 for a in d.actions)
    assert d.memory.idle_since is None


def test_idle_growth_by_formula_is_stopped_after_grace():
    m = ScalingMemory(idle_since=T0 - timedelta(seconds=300))
    d = decide(pool(Allocation.RESIZING, autoscale=True, current=0, target=2), IDLE, m, POLICY, T0)
    assert d.actions == (DisableAutoscale(), StopResize())


def test_manual_pool_grows_to_need_but_autoscale_pool_is_the_formulas_call():
    manual = decide(pool(autoscale=False, current=1, target=1), work(active=3), ScalingMemory(), POLICY, T0)
    assert manual.actions == (Resize(3),) and manual.reason is Reason.GROW
    auto = decide(pool(autoscale=True, current=1, target=1), work(active=3), ScalingMemory(), POLICY, T0)
    assert auto.actions == () and auto.reason is Reason.AUTOSCALE


def test_steady_pool_that_failed_to_allocate_is_resized_again():
    # target 2 but no node came (quota/capacity): retried, and visible as a wake each tick.
    d = decide(pool(autoscale=True, current=0, target=2), work(active=2), ScalingMemory(), POLICY, T0)
    assert d.actions == (DisableAutoscale(), Resize(2))


def test_hand_back_waits_for_the_hold_and_the_enable_gap():
    p = pool(autoscale=False, current=2, target=2)
    m = ScalingMemory(last_pool_change=T0)
    assert decide(p, work(running=2), m, POLICY, T0 + timedelta(seconds=299)).reason is Reason.HOLD
    d = decide(p, work(running=2), m, POLICY, T0 + timedelta(seconds=300))
    assert d.actions == (EnableAutoscale(),) and d.reason is Reason.HAND_BACK
    recent_enable = ScalingMemory(last_pool_change=T0, last_autoscale_enable=T0 + timedelta(seconds=290))
    assert decide(p, work(running=2), recent_enable, POLICY, T0 + timedelta(seconds=300)).actions == ()


def test_parked_pool_is_handed_back_to_autoscale_after_the_hold():
    parked = pool(autoscale=False, current=0, target=0)
    m = ScalingMemory(idle_since=T0, last_pool_change=T0)
    assert decide(parked, IDLE, m, POLICY, T0 + timedelta(seconds=60)).actions == ()
    assert decide(parked, IDLE, m, POLICY, T0 + timedelta(seconds=300)).actions == (EnableAutoscale(),)


def test_manual_idle_pool_within_grace_is_not_handed_back():
    m = ScalingMemory(idle_since=T0, last_pool_change=T0 - timedelta(hours=1))
    d = decide(pool(autoscale=False, current=1, target=1), IDLE, m, POLICY, T0 + timedelta(seconds=10))
    assert d.actions == () and d.reason is Reason.IDLE_GRACE


def test_unknown_manual_mode_starts_the_hold_clock():
    d = decide(pool(autoscale=False, current=1, target=1), work(running=1), ScalingMemory(), POLICY, T0)
    assert d.actions == () and d.memory.last_pool_change == T0


def test_bad_nodes_are_replaced_while_work_waits_within_a_budget():
    p = pool(autoscale=True, current=2, target=2, bad=("n1",))
    d = decide(p, work(active=2), ScalingMemory(), POLICY, T0)
    assert d.actions == (DisableAutoscale(), RemoveNodes(("n1",)))
    spent = ScalingMemory(replacement_window_start=T0, replacements_in_window=POLICY.replacement_budget())
    d2 = decide(p, work(active=2), spent, POLICY, T0 + timedelta(minutes=10))
    assert d2.actions == () and d2.reason is Reason.REPLACEMENT_BUDGET_SPENT
    d3 = decide(p, work(active=2), spent, POLICY, T0 + timedelta(minutes=61))
    assert d3.actions == (DisableAutoscale(), RemoveNodes(("n1",)))


def test_bad_nodes_on_idle_pool_go_with_scale_to_zero_not_replacement():
    p = pool(autoscale=True, current=1, target=1, bad=("n1",))
    m = ScalingMemory(idle_since=T0 - timedelta(seconds=500))
    assert decide(p, IDLE, m, POLICY, T0).actions == (DisableAutoscale(), Resize(0))


def test_no_pool_means_no_action():
    d = decide(None, work(active=5), ScalingMemory(), POLICY, T0)
    assert d.actions == () and d.reason is Reason.NO_POOL


def test_remember_tracks_ownership_enable_time_and_replacements():
    m = remember(ScalingMemory(), Resize(2), T0)
    assert m.last_pool_change == T0
    m = remember(m, EnableAutoscale(), T0 + timedelta(seconds=5))
    assert m.last_autoscale_enable == T0 + timedelta(seconds=5) and m.last_pool_change is None
    m = remember(m, RemoveNodes(("a", "b")), T0 + timedelta(seconds=10))
    assert m.replacements_in_window == 2 and m.replacement_window_start == T0 + timedelta(seconds=10)
    m = remember(m, RemoveNodes(("c",)), T0 + timedelta(hours=2))
    assert m.replacements_in_window == 1


def test_idle_nodes_are_released_while_the_last_tasks_run():
    d = decide(pool(autoscale=False, current=4, target=4, idle=("a", "b")), work(active=0, running=2),
               ScalingMemory(), POLICY, T0)
    assert d.reason is Reason.RELEASE_IDLE and d.actions == (ReleaseNodes(("a", "b")),)


def test_one_idle_node_is_kept_through_the_grace_once_nothing_runs():
    d = decide(pool(autoscale=True, current=3, target=3, idle=("a", "b", "c")), IDLE, ScalingMemory(), POLICY, T0)
    assert d.reason is Reason.RELEASE_IDLE and d.actions == (DisableAutoscale(), ReleaseNodes(("b", "c")))
    kept = decide(pool(autoscale=False, current=1, target=1, idle=("a",)), IDLE, d.memory, POLICY,
                  T0 + timedelta(seconds=60))
    assert kept.reason is Reason.IDLE_GRACE and kept.actions == ()
    parked = decide(pool(autoscale=False, current=1, target=1, idle=("a",)), IDLE, d.memory, POLICY,
                    T0 + timedelta(seconds=120))
    assert parked.reason is Reason.SCALE_TO_ZERO


def test_no_node_is_released_while_work_waits():
    d = decide(pool(autoscale=False, current=4, target=4, idle=("a",)), work(active=1, running=3),
               ScalingMemory(), POLICY, T0)
    assert d.reason is not Reason.RELEASE_IDLE and not any(isinstance(a, ReleaseNodes) for a in d.actions)
