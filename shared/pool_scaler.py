"""Scaling rounds: read the pool, decide (shared/scaling.py, pure), act through Batch, and repeat once
after a transitional step (stop-resize) so a wake lands within the same tick."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from .batch_types import PoolActionRefused, TimerBatch
from .batch_types import NodeView, PoolView
from .log import event, get_logger
from .scaling import (
    Action,
    Decision,
    DisableAutoscale,
    EnableAutoscale,
    ReleaseNodes,
    RemoveNodes,
    Resize,
    ScalingMemory,
    ScalingPolicy,
    StopResize,
    WorkSnapshot,
    decide,
    remember,
)

_log = get_logger("scaling")

MAX_SCALING_ROUNDS = 3          # stop-resize -> re-read -> resize fits in one tick
SETTLE_SECONDS = 1.0            # pause before re-reading a pool whose resize was just stopped


class PoolControl(Protocol):
    def read_pool(self) -> PoolView | None: ...

    def execute(self, action: Action) -> None: ...


class BatchPoolControl:
    """PoolControl over the Batch module; remembers the nodes of the last read for the status row."""

    def __init__(self, monitor: TimerBatch) -> None:
        self._monitor = monitor
        self.nodes: tuple[NodeView, ...] = ()

    def read_pool(self) -> PoolView | None:
        view = self._monitor.get_pool()
        if view is None:
            self.nodes = ()
            return None
        view, self.nodes = self._monitor.with_nodes(view)
        return view

    def execute(self, action: Action) -> None:
        if isinstance(action, DisableAutoscale):
            self._monitor.disable_autoscale()
        elif isinstance(action, EnableAutoscale):
            self._monitor.enable_autoscale()
        elif isinstance(action, Resize):
            self._monitor.resize(action.target)
        elif isinstance(action, StopResize):
            self._monitor.stop_resize()
        elif isinstance(action, RemoveNodes):
            self._monitor.remove_nodes(action.node_ids)
        elif isinstance(action, ReleaseNodes):
            self._monitor.remove_nodes(action.node_ids, deallocation="taskcompletion")
        else:  # pragma: no cover - exhaustive over scaling.Action
            raise TypeError(f"unknown action {action!r}")


@dataclass
class ScalingOutcome:
    decisions: list[Decision] = field(default_factory=list)
    executed: list[Action] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    memory: ScalingMemory = field(default_factory=ScalingMemory)
    pool: PoolView | None = None


def describe(action: Action) -> str:
    if isinstance(action, Resize):
        return f"resize({action.target})"
    if isinstance(action, (RemoveNodes, ReleaseNodes)):
        return f"{action.kind}({len(action.node_ids)})"
    return action.kind


def scale_pool(control: PoolControl, work: WorkSnapshot, memory: ScalingMemory, policy: ScalingPolicy,
               clock: Callable[[], datetime], sleep: Callable[[float], None] = time.sleep,
               max_rounds: int = MAX_SCALING_ROUNDS) -> ScalingOutcome:
    """Read the pool, decide, act; re-read and decide again after a transitional step (stop-resize).

    Actions of one decision run in order and stop at the first refusal (e.g. 409 while a resize
    is still being accepted after disabling autoscale): the next tick decides from fresh state."""
    outcome = ScalingOutcome(memory=memory)
    for round_no in range(max_rounds):
        if round_no:
            sleep(SETTLE_SECONDS)
        view = control.read_pool()
        outcome.pool = view
        decision = decide(view.snapshot if view else None, work, outcome.memory, policy, clock())
        outcome.decisions.append(decision)
        outcome.memory = decision.memory
        refused = False
        for action in decision.actions:
            try:
                control.execute(action)
            except PoolActionRefused as exc:
                outcome.refused.append(f"{exc.operation}: {exc.code or exc.status}")
                refused = True
                break
            outcome.executed.append(action)
            outcome.memory = remember(outcome.memory, action, clock())
        if decision.actions:
            event(_log, logging.INFO, "scaling.decision", reason=decision.reason.value, need=decision.need,
                  actions=",".join(describe(a) for a in decision.actions), refused=refused or None,
                  autoscale=view.snapshot.autoscale_enabled if view else None,
                  current=view.snapshot.current_nodes if view else None,
                  target=view.snapshot.target_nodes if view else None)
        if refused or not decision.transitional:
            break
    if outcome.executed:
        outcome.pool = control.read_pool()  # the status row shows the pool as the actions left it
    return outcome
