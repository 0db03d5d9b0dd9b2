"""Node-seconds per pool for cost benchmarks: dedicated vs low-priority, busy (running at least one task) vs idle.

Every allocated node is billed from the moment it exists (creating) until it is removed, as on the service where
a VM is billed once allocated. Accumulated by the scheduler on each pass; persisted so a restart keeps the totals.
"""
from __future__ import annotations

import threading
from datetime import datetime
from typing import Any, Iterable

from .backend.records import PoolRecord
from .timeutil import iso, utcnow

_FIELDS = ("dedicatedNodeSeconds", "lowPriorityNodeSeconds", "busyNodeSeconds", "idleNodeSeconds")


class Meter:
    def __init__(self, saved: dict[str, Any] | None = None) -> None:
        self._lock = threading.Lock()
        saved = saved or {}
        self._since = saved.get("since") or iso(utcnow())
        self._pools: dict[str, dict[str, float]] = {
            pool_id: {f: float(v.get(f, 0.0)) for f in _FIELDS} for pool_id, v in (saved.get("pools") or {}).items()}
        self._current: dict[str, dict[str, int]] = {}

    def accumulate(self, pools: Iterable[PoolRecord], seconds: float) -> None:
        if seconds <= 0:
            return
        with self._lock:
            current: dict[str, dict[str, int]] = {}
            for pool in pools:
                acc = self._pools.setdefault(pool.id, {f: 0.0 for f in _FIELDS})
                now_counts = {"dedicated": 0, "lowPriority": 0, "busy": 0, "idle": 0}
                for node in pool.nodes.values():
                    if node.is_dedicated:
                        acc["dedicatedNodeSeconds"] += seconds
                        now_counts["dedicated"] += 1
                    else:
                        acc["lowPriorityNodeSeconds"] += seconds
                        now_counts["lowPriority"] += 1
                    if node.running:
                        acc["busyNodeSeconds"] += seconds
                        now_counts["busy"] += 1
                    else:
                        acc["idleNodeSeconds"] += seconds
                        now_counts["idle"] += 1
                current[pool.id] = now_counts
            self._current = current

    def snapshot(self, now: datetime | None = None) -> dict[str, Any]:
        with self._lock:
            pools = {}
            for pool_id, acc in self._pools.items():
                pools[pool_id] = {**{f: round(v, 3) for f, v in acc.items()},
                                  "currentNodes": self._current.get(pool_id, {"dedicated": 0, "lowPriority": 0,
                                                                              "busy": 0, "idle": 0})}
            return {"since": self._since, "asOf": iso(now or utcnow()), "pools": pools}

    def persisted(self) -> dict[str, Any]:
        with self._lock:
            return {"since": self._since, "pools": {k: dict(v) for k, v in self._pools.items()}}

    def reset(self) -> None:
        with self._lock:
            self._pools.clear()
            self._since = iso(utcnow())
