"""Pool scaling decisions for the timer: pure functions, no I/O, time passed in.

Who owns the pool's size
------------------------
Batch offers two mutually exclusive ways to size a pool: an autoscale formula (evaluated at most every
5 minutes, on metric samples that lag by about a minute and are usually averaged over a few minutes) or
manual resizes (refused with 409 while autoscale is enabled, or while another resize runs). Neither alone
meets the product's two promises - a new upload gets nodes within about one timer tick, and an idle pool
is at zero nodes within about one tick after its grace period - so the timer acts at the *edges* and the
formula keeps the steady state:

* WAKE: work is pending and the pool targets zero nodes -> disable autoscale (if on) and resize to the
  nodes the work needs. Re-enabling autoscale would also evaluate at once, but its samples may not show the
  new task yet (the formula could answer 0 again), so the timer resizes explicitly.
* SCALE TO ZERO: no active or running task for ``idle_grace`` -> disable autoscale (if on) and resize to 0
  with ``taskcompletion`` (Batch removes a node only after its running task ends: nothing is killed).
* RELEASE IDLE NODES as the queue drains: nothing waits and some nodes are idle -> remove those nodes
  (``taskcompletion``), keeping one idle node through the grace period once nothing runs either. A burst's
  ragged tail and its grace period then bill one node, not the whole pool; a follow-up upload still finds
  a node at once, and grows the pool if it needs more.
* While the timer owns the pool (autoscale disabled) it grows it to the need, replaces unusable nodes,
  and after ``autoscale_handback`` without changes it hands the pool back by re-enabling autoscale. The hold
  lets the formula's look-back window fill with samples of the current state, so the formula's immediate
  evaluation agrees with the size the timer set instead of undoing it. Enable calls are kept at least
  ``enable_autoscale_gap`` (the service's 30 s rule) apart.
* A resize in flight that goes the wrong way (shrinking to zero under new work, or growing an idle pool)
  is stopped; the next decision round (same tick, after a re-read) resizes.

Autoscale stays on whenever the pool is at rest, so if the timer stops running the formula still wakes
the pool (within its evaluation interval) and scales it back to zero: the timer makes scaling fast, it is
not needed for it to be correct.

Why no task is ever stranded with zero nodes
--------------------------------------------
Claim: a task that is active while the pool targets zero nodes gets a non-zero target by the end of the
first tick that *reads task counts after the task was added* (and, in the worst case, that tick is the next
one after the task was added).

1. Every decision is level-triggered: it is computed from a fresh read of the pool and of the job's task
   counts in the same tick, never from remembered intent. The only remembered values (``ScalingMemory``)
   can delay a *scale-down* or a *hand-back*, never a wake: ``idle_since`` is cleared by any read that
   shows pending work, and no rule consults memory before waking.
2. If a tick's read shows ``active + running > 0`` it never scales to zero (rule order below), and when the
   pool's target is 0 it wakes: steady -> resize to the need; resizing (towards 0) -> stop the resize,
   re-read, then resize; stopping -> the next round or tick sees it steady.
3. An upload can interleave with a scale-to-zero tick in only three ways, all covered by 1-2:
   (a) task added before the tick's read: the read sees it, no scale-to-zero happens;
   (b) task added between the read and the resize-to-0 call (or during the resize): the resize proceeds,
       ``taskcompletion`` keeps any node that already started the task, and the next tick's read sees the
       task active with target 0 -> wake (stopping the shrink first if it is still running);
   (c) task added after the resize completed: the next tick wakes the pool exactly like any upload onto a
       zero-node pool.
   The hand-back (enable autoscale) racing with an upload is case (b) again: if the formula's first
   evaluation misses the task and answers 0, the next tick sees "autoscale on, target 0, work pending"
   and wakes it by resize.
4. Task counts "may not always be up to date" (SDK docstring); the timer therefore passes the larger of
   the job's counts and the tasks its own changed-task listing saw active or running, both lower bounds
   of the truth. A count that lags one tick delays the wake by one tick; it cannot suppress it forever.
5. Overlapping ticks (the host runs the timer as a singleton, but a past-due run can overlap) cannot
   undo a wake for longer than one tick: each decides from its own fresh read, and any tick that sees the
   task wakes the pool. Conflicting calls fail with 409 (PoolBeingResized) and are retried next tick.
6. If the timer stops entirely, autoscale (on whenever the pool rests) still sees the task through
   ``$PendingTasks`` within its evaluation interval.

docs/scaling.md walks through each interleaving; tests/app/test_scaling_race.py checks them.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta


class Allocation(str, enum.Enum):
    """The pool's ``allocationState`` (Batch AllocationState)."""

    STEADY = "steady"
    RESIZING = "resizing"
    STOPPING = "stopping"


@dataclass(frozen=True)
class PoolSnapshot:
    """What the timer read about the pool this round (dedicated and Spot/low-priority summed)."""

    allocation: Allocation
    autoscale_enabled: bool
    current_nodes: int
    target_nodes: int
    task_slots_per_node: int = 1
    bad_node_ids: tuple[str, ...] = ()  # nodes in startTaskFailed / unusable: billed, never run work
    idle_node_ids: tuple[str, ...] = ()  # booted nodes running no task (billed, free for work)


@dataclass(frozen=True)
class WorkSnapshot:
    """Tasks of the standing job that need a node: ``active`` (queued or awaiting retry) and ``running``."""

    active: int
    running: int

    @property
    def pending(self) -> int:
        return self.active + self.running


@dataclass(frozen=True)
class ScalingPolicy:
    max_nodes: int
    idle_grace: timedelta
    autoscale_handback: timedelta
    enable_autoscale_gap: timedelta = timedelta(seconds=30)  # service rule between enableautoscale calls
    replacements_per_hour: int | None = None  # unusable-node replacements budget; None = 2 x max_nodes

    def replacement_budget(self) -> int:
        return self.replacements_per_hour if self.replacements_per_hour is not None else 2 * self.max_nodes


@dataclass(frozen=True)
class ScalingMemory:
    """The little the controller remembers between ticks (kept in the status entity).

    Losing it is safe: ``idle_since`` restarts the grace period (a later scale-down), ``last_pool_change``
    restarts the hand-back hold, ``last_autoscale_enable`` makes the next enable wait for the gap.
    """

    idle_since: datetime | None = None
    last_pool_change: datetime | None = None
    last_autoscale_enable: datetime | None = None
    replacement_window_start: datetime | None = None
    replacements_in_window: int = 0


# --- actions ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DisableAutoscale:
    kind: str = field(default="disable_autoscale", init=False)


@dataclass(frozen=True)
class EnableAutoscale:
    kind: str = field(default="enable_autoscale", init=False)


@dataclass(frozen=True)
class Resize:
    """Manual resize; node removal always uses ``taskcompletion`` so no running task is killed."""

    target: int
    kind: str = field(default="resize", init=False)


@dataclass(frozen=True)
class StopResize:
    kind: str = field(default="stop_resize", init=False)


@dataclass(frozen=True)
class RemoveNodes:
    """Remove specific (unusable) nodes; any task on them is requeued, not lost."""

    node_ids: tuple[str, ...]
    kind: str = field(default="remove_nodes", init=False)


@dataclass(frozen=True)
class ReleaseNodes:
    """Remove specific idle nodes with ``taskcompletion``: a task that lands on one meanwhile finishes first."""

    node_ids: tuple[str, ...]
    kind: str = field(default="release_nodes", init=False)


Action = DisableAutoscale | EnableAutoscale | Resize | StopResize | RemoveNodes | ReleaseNodes


class Reason(str, enum.Enum):
    NO_POOL = "no_pool"
    WAIT_STOPPING = "wait_stopping"
    STOP_SHRINK_FOR_WORK = "stop_shrink_for_work"
    STOP_GROWTH_WHILE_IDLE = "stop_growth_while_idle"
    WAIT_RESIZE = "wait_resize"
    WAKE = "wake"
    REPLACE_BAD_NODES = "replace_bad_nodes"
    REPLACEMENT_BUDGET_SPENT = "replacement_budget_spent"
    GROW = "grow"
    SCALE_TO_ZERO = "scale_to_zero"
    RELEASE_IDLE = "release_idle"
    IDLE_GRACE = "idle_grace"
    HAND_BACK = "hand_back"
    HOLD = "hold"
    AUTOSCALE = "autoscale"


@dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...]
    reason: Reason
    need: int
    memory: ScalingMemory  # memory after this read; apply ``remember`` for each action that succeeded

    @property
    def transitional(self) -> bool:
        """True when the pool must be re-read before the next step can be chosen (same tick)."""
        return any(isinstance(a, StopResize) for a in self.actions)


def nodes_needed(work: WorkSnapshot, slots_per_node: int, max_nodes: int) -> int:
    if work.pending <= 0:
        return 0
    return max(1, min(max_nodes, math.ceil(work.pending / max(1, slots_per_node))))


def decide(pool: PoolSnapshot | None, work: WorkSnapshot, memory: ScalingMemory,
           policy: ScalingPolicy, now: datetime) -> Decision:
    """One round: the actions to take now, in order. Rules are checked top to bottom; the first match wins."""
    if pool is None:
        # The submit path creates the pool lazily with autoscale on; nothing to scale yet.
        return Decision((), Reason.NO_POOL, nodes_needed(work, 1, policy.max_nodes), _track_idle(memory, work, now))

    need = nodes_needed(work, pool.task_slots_per_node, policy.max_nodes)
    memory = _track_idle(memory, work, now)
    idle_long = work.pending == 0 and memory.idle_since is not None and now - memory.idle_since >= policy.idle_grace
    if not pool.autoscale_enabled and memory.last_pool_change is None:
        # Manual mode we have no record of (lost memory, or an operator): start the hand-back hold now.
        memory = replace(memory, last_pool_change=now)
    take_over: tuple[Action, ...] = (DisableAutoscale(),) if pool.autoscale_enabled else ()

    def decision(actions: tuple[Action, ...], reason: Reason) -> Decision:
        return Decision(actions, reason, need, memory)

    if pool.allocation is Allocation.STOPPING:
        return decision((), Reason.WAIT_STOPPING)

    if pool.allocation is Allocation.RESIZING:
        if need > 0 and pool.target_nodes == 0:
            return decision(take_over + (StopResize(),), Reason.STOP_SHRINK_FOR_WORK)
        if idle_long and pool.target_nodes > 0:
            return decision(take_over + (StopResize(),), Reason.STOP_GROWTH_WHILE_IDLE)
        return decision((), Reason.WAIT_RESIZE)

    # steady. A steady pool with current < target has given up allocating (quota, capacity): treat the
    # shortfall like a missing target so the resize is retried each tick and the error stays visible.
    if need > 0 and (pool.target_nodes == 0 or pool.current_nodes == 0):
        return decision(take_over + (Resize(need),), Reason.WAKE)

    if need > 0 and pool.bad_node_ids:
        batch = pool.bad_node_ids[:MAX_NODES_PER_REMOVAL]
        if _replacements_left(memory, policy, now) >= len(batch):
            return decision(take_over + (RemoveNodes(batch),), Reason.REPLACE_BAD_NODES)
        replace_reason = Reason.REPLACEMENT_BUDGET_SPENT
    else:
        replace_reason = None

    if not pool.autoscale_enabled and (need > pool.target_nodes or pool.current_nodes < min(need, pool.target_nodes)):
        return decision((Resize(need),), Reason.GROW)

    if idle_long and (pool.target_nodes > 0 or pool.current_nodes > 0):
        return decision(take_over + (Resize(0),), Reason.SCALE_TO_ZERO)

    if work.active == 0 and pool.idle_node_ids:
        keep = 0 if work.running > 0 else 1  # one warm node for a follow-up during the grace period
        release = pool.idle_node_ids[keep:MAX_NODES_PER_REMOVAL + keep]
        if release:
            return decision(take_over + (ReleaseNodes(release),), Reason.RELEASE_IDLE)

    if pool.autoscale_enabled:
        return decision((), replace_reason or Reason.AUTOSCALE)

    if work.pending == 0 and (pool.target_nodes > 0 or pool.current_nodes > 0):
        return decision((), Reason.IDLE_GRACE)  # manual, idle, grace not over: keep nodes for a follow-up

    if _may_hand_back(memory, policy, now):
        return decision((EnableAutoscale(),), Reason.HAND_BACK)
    return decision((), replace_reason or Reason.HOLD)


def remember(memory: ScalingMemory, action: Action, now: datetime) -> ScalingMemory:
    """Memory after ``action`` succeeded at ``now``."""
    if isinstance(action, EnableAutoscale):
        return replace(memory, last_autoscale_enable=now, last_pool_change=None)
    if isinstance(action, RemoveNodes):
        window_start = memory.replacement_window_start
        count = memory.replacements_in_window
        if window_start is None or now - window_start >= _REPLACEMENT_WINDOW:
            window_start, count = now, 0
        return replace(memory, last_pool_change=now, replacement_window_start=window_start,
                       replacements_in_window=count + len(action.node_ids))
    # disable / resize / stop: the timer now owns the pool; the hand-back hold restarts.
    return replace(memory, last_pool_change=now)


_REPLACEMENT_WINDOW = timedelta(hours=1)
MAX_NODES_PER_REMOVAL = 100  # service limit per remove-nodes request


def _track_idle(memory: ScalingMemory, work: WorkSnapshot, now: datetime) -> ScalingMemory:
    if work.pending > 0:
        return replace(memory, idle_since=None) if memory.idle_since is not None else memory
    return memory if memory.idle_since is not None else replace(memory, idle_since=now)


def _replacements_left(memory: ScalingMemory, policy: ScalingPolicy, now: datetime) -> int:
    start = memory.replacement_window_start
    if start is None or now - start >= _REPLACEMENT_WINDOW:
        return policy.replacement_budget()
    return max(0, policy.replacement_budget() - memory.replacements_in_window)


def _may_hand_back(memory: ScalingMemory, policy: ScalingPolicy, now: datetime) -> bool:
    held = memory.last_pool_change is None or now - memory.last_pool_change >= policy.autoscale_handback
    gap_ok = memory.last_autoscale_enable is None or now - memory.last_autoscale_enable >= policy.enable_autoscale_gap
    return held and gap_ok
