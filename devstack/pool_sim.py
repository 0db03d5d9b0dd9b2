"""A deterministic, simulated-time model of one Batch pool + job, for the scaling race tests and the cost bench.

It follows the service rules the timer must live with (research §4 / SDK docstrings):
- resize is refused (409) while autoscale is enabled or while the pool is not steady;
- enableautoscale is refused while resizing, and within 30 s of the previous enable (503);
- enabling autoscale evaluates the formula at once, then every `interval`;
- the formula is shared/pool_spec.py's: metric samples of $PendingTasks every 30 s, visible after a lag;
  with a thin history (< 70 % of 3 min) the last sample decides, else the max over 3 min;
- node removal is `taskcompletion`: an idle node leaves at once, a busy one after its task; a removed
  node that still runs a task is a bug the simulator raises on;
- stop-resize: stopping -> steady after `stop_delay`, the pool keeps the nodes it has.
Allocation takes `alloc_delay`, then nodes boot for `boot_delay` before they take tasks.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from shared.batch_types import PoolActionRefused, PoolView
from shared.scaling import (
    Action,
    Allocation,
    DisableAutoscale,
    EnableAutoscale,
    PoolSnapshot,
    ReleaseNodes,
    RemoveNodes,
    Resize,
    StopResize,
    WorkSnapshot,
)

T0 = datetime(2026, 1, 1, 0, 0, tzinfo=timezone.utc)


@dataclass
class SimNode:
    node_id: str
    ready_at: datetime
    task: str | None = None
    task_done_at: datetime | None = None
    leaving: bool = False
    joined_at: datetime = T0


@dataclass
class SimTask:
    task_id: str
    added_at: datetime
    started_at: datetime | None = None
    done_at: datetime | None = None


@dataclass
class SimConfig:
    max_nodes: int = 4
    slots: int = 1
    alloc_delay: timedelta = timedelta(seconds=20)
    boot_delay: timedelta = timedelta(seconds=60)
    stop_delay: timedelta = timedelta(milliseconds=500)
    task_seconds: float = 40.0
    interval: timedelta = timedelta(minutes=5)
    sample_period: timedelta = timedelta(seconds=30)
    sample_lag: timedelta = timedelta(seconds=60)
    enable_gap: timedelta = timedelta(seconds=30)


class SimPool:
    def __init__(self, config: SimConfig | None = None, *, autoscale: bool = True, nodes: int = 0,
                 now: datetime = T0) -> None:
        self.cfg = config or SimConfig()
        self.now = now
        self.autoscale = autoscale
        self.allocation = Allocation.STEADY
        self.target = nodes
        self.nodes: list[SimNode] = [SimNode(f"n{i}", ready_at=now, joined_at=now) for i in range(nodes)]
        self._ids = itertools.count(nodes)
        self.tasks: dict[str, SimTask] = {}
        self._task_ids = itertools.count()
        self._alloc_done_at: datetime | None = None
        self._stop_done_at: datetime | None = None
        self.last_enable: datetime | None = None
        self.next_eval: datetime | None = now + self.cfg.interval if autoscale else None
        self.samples: list[tuple[datetime, int]] = []
        self._next_sample = now
        self.node_seconds = 0.0
        self.busy_seconds = 0.0
        self.calls: list[str] = []
        self.nodes_created = 0
        self.longest_strand = 0.0  # longest stretch with queued work and a zero target, seconds
        self._strand = 0.0

    # -- observation --------------------------------------------------------------------------
    def work(self) -> WorkSnapshot:
        active = sum(1 for t in self.tasks.values() if t.started_at is None)
        running = sum(1 for t in self.tasks.values() if t.started_at is not None and t.done_at is None)
        return WorkSnapshot(active=active, running=running)

    def snapshot(self) -> PoolSnapshot:
        idle = tuple(n.node_id for n in self.nodes if n.task is None and not n.leaving and n.ready_at <= self.now)
        return PoolSnapshot(allocation=self.allocation, autoscale_enabled=self.autoscale,
                            current_nodes=len(self.nodes), target_nodes=self.target,
                            task_slots_per_node=self.cfg.slots, idle_node_ids=idle)

    def view(self) -> PoolView:
        return PoolView(self.snapshot(), (), None)

    # -- time -----------------------------------------------------------------------------------
    def advance(self, seconds: float, step: float = 1.0) -> None:
        end = self.now + timedelta(seconds=seconds)
        while self.now < end:
            dt = min(timedelta(seconds=step), end - self.now)
            self.node_seconds += len(self.nodes) * dt.total_seconds()
            self.busy_seconds += sum(1 for n in self.nodes if n.task) * dt.total_seconds()
            self.now += dt
            self._progress()
            if self.work().active > 0 and self.target == 0:
                self._strand += dt.total_seconds()
                self.longest_strand = max(self.longest_strand, self._strand)
            else:
                self._strand = 0.0

    def _progress(self) -> None:
        now = self.now
        for node in self.nodes:
            if node.task and node.task_done_at and node.task_done_at <= now:
                self.tasks[node.task].done_at = node.task_done_at
                node.task = node.task_done_at = None
        # taskcompletion: leaving nodes go as soon as they are idle
        self.nodes = [n for n in self.nodes if not (n.leaving and n.task is None)]
        if self.allocation is Allocation.STOPPING and self._stop_done_at and now >= self._stop_done_at:
            self.allocation = Allocation.STEADY
            for n in self.nodes:
                n.leaving = False
            self.target = len(self.nodes)
        if self.allocation is Allocation.RESIZING:
            self._resize_progress()
        self._schedule()
        while self._next_sample <= now:
            self.samples.append((self._next_sample, self.work().active + self.work().running))
            self._next_sample += self.cfg.sample_period
        if self.autoscale and self.next_eval is not None and now >= self.next_eval:
            self.next_eval = now + self.cfg.interval
            self._evaluate()

    def _resize_progress(self) -> None:
        live = [n for n in self.nodes if not n.leaving]
        if len(live) < self.target:
            if self._alloc_done_at is None:
                self._alloc_done_at = self.now + self.cfg.alloc_delay
            if self.now >= self._alloc_done_at:
                for _ in range(self.target - len(live)):
                    self.nodes_created += 1
                    self.nodes.append(SimNode(f"n{next(self._ids)}", ready_at=self.now + self.cfg.boot_delay,
                                              joined_at=self.now))
                self._alloc_done_at = None
        elif len(live) > self.target:
            # taskcompletion: prefer idle (or still booting) nodes, then mark busy ones leaving.
            surplus = len(live) - self.target
            for n in sorted(live, key=lambda n: n.task is not None):
                if surplus == 0:
                    break
                n.leaving = True
                surplus -= 1
            self.nodes = [n for n in self.nodes if not (n.leaving and n.task is None)]
        if len(self.nodes) == self.target and all(not n.leaving for n in self.nodes):
            self.allocation = Allocation.STEADY

    def _schedule(self) -> None:
        waiting = sorted((t for t in self.tasks.values() if t.started_at is None), key=lambda t: t.added_at)
        for node in self.nodes:
            if not waiting:
                return
            if node.task is None and not node.leaving and node.ready_at <= self.now:
                task = waiting.pop(0)
                task.started_at = self.now
                node.task = task.task_id
                node.task_done_at = self.now + timedelta(seconds=self.cfg.task_seconds)

    def _formula_target(self) -> int:
        visible = [(t, v) for t, v in self.samples if t <= self.now - self.cfg.sample_lag]
        window = [v for t, v in visible if t > self.now - self.cfg.sample_lag - timedelta(minutes=3)]
        expected = 6  # 3 min / 30 s
        if not visible:
            pending = 0
        elif len(window) * 100 / expected < 70:
            pending = visible[-1][1]
        else:
            pending = max(window)
        return min(self.cfg.max_nodes, math.ceil(pending / self.cfg.slots))

    def _evaluate(self) -> None:
        target = self._formula_target()
        if target != self.target and self.allocation is Allocation.STEADY:
            self.target = target
            self.allocation = Allocation.RESIZING
            self._resize_progress()

    # -- the job --------------------------------------------------------------------------------
    def add_task(self) -> str:
        task_id = f"t{next(self._task_ids)}"
        self.tasks[task_id] = SimTask(task_id, self.now)
        self._schedule()
        return task_id

    # -- pool operations (the service rules) -------------------------------------------------------
    def execute(self, action: Action) -> None:
        self.calls.append(action.kind)
        if isinstance(action, DisableAutoscale):
            self.autoscale = False
            self.next_eval = None
        elif isinstance(action, EnableAutoscale):
            if self.allocation is not Allocation.STEADY:
                raise PoolActionRefused("enable_autoscale", "OperationInvalidForCurrentState", 409)
            if self.last_enable is not None and self.now - self.last_enable < self.cfg.enable_gap:
                raise PoolActionRefused("enable_autoscale", "TooManyEnableAutoScaleRequests", 503)
            self.autoscale = True
            self.last_enable = self.now
            self.next_eval = self.now + self.cfg.interval
            self._evaluate()  # enabling evaluates at once
        elif isinstance(action, Resize):
            if self.autoscale or self.allocation is not Allocation.STEADY:
                code = "PoolBeingResized" if self.allocation is not Allocation.STEADY else "OperationInvalidForCurrentState"
                raise PoolActionRefused("resize", code, 409)
            self.target = action.target
            self.allocation = Allocation.RESIZING
            self._resize_progress()
        elif isinstance(action, StopResize):
            if self.allocation is not Allocation.RESIZING:
                raise PoolActionRefused("stop_resize", "OperationInvalidForCurrentState", 409)
            self.allocation = Allocation.STOPPING
            self._alloc_done_at = None
            self._stop_done_at = self.now + self.cfg.stop_delay
        elif isinstance(action, RemoveNodes):
            if self.allocation is not Allocation.STEADY:
                raise PoolActionRefused("remove_nodes", "PoolBeingResized", 409)
            self.nodes = [n for n in self.nodes if n.node_id not in action.node_ids]
            self.target = len(self.nodes)
        elif isinstance(action, ReleaseNodes):
            if self.allocation is not Allocation.STEADY:
                raise PoolActionRefused("remove_nodes", "PoolBeingResized", 409)
            for n in self.nodes:  # taskcompletion: a busy node leaves after its task
                if n.node_id in action.node_ids:
                    n.leaving = True
            self.nodes = [n for n in self.nodes if not (n.leaving and n.task is None)]
            self.target = sum(1 for n in self.nodes if not n.leaving)
            if any(n.leaving for n in self.nodes):
                self.allocation = Allocation.RESIZING
        else:  # pragma: no cover
            raise TypeError(action)
        self._check_no_task_lost()

    def _check_no_task_lost(self) -> None:
        running = {n.task for n in self.nodes if n.task}
        for task in self.tasks.values():
            if task.started_at is not None and task.done_at is None and task.task_id not in running:
                raise AssertionError(f"task {task.task_id} lost its node while running")


class SimControl:
    """PoolControl over a SimPool, calling `hook` around every Batch call (to inject uploads)."""

    def __init__(self, pool: SimPool, hook=None) -> None:
        self.pool = pool
        self.hook = hook or (lambda: None)

    def read_pool(self) -> PoolView:
        self.hook()
        view = self.pool.view()
        self.hook()
        return view

    def execute(self, action: Action) -> None:
        try:
            self.pool.execute(action)
        finally:
            self.hook()
