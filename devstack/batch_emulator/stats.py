"""Request counters per Batch operation (e.g. "Task_Add") and status, for benchmarks and tests (/_emulator/stats)."""
from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class RequestStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ops: Counter[str] = Counter()
        self._statuses: Counter[str] = Counter()
        self._by_op_status: Counter[tuple[str, int]] = Counter()

    def record(self, operation: str, status: int) -> None:
        with self._lock:
            self._ops[operation] += 1
            self._statuses[str(status)] += 1
            self._by_op_status[(operation, status)] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            detail: dict[str, dict[str, int]] = {}
            for (op, status), n in self._by_op_status.items():
                detail.setdefault(op, {})[str(status)] = n
            return {"total": sum(self._ops.values()), "operations": dict(self._ops),
                    "statuses": dict(self._statuses), "byOperationStatus": detail}

    def reset(self) -> None:
        with self._lock:
            self._ops.clear()
            self._statuses.clear()
            self._by_op_status.clear()
