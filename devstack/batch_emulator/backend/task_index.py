"""Per-job task indexes, kept up to date by State on every write-through, so no request costs O(tasks in the job).

- creation order (`seq`) with deletions as tombstones: a page of a list starts where the previous one ended
  (bisect), instead of skipping every earlier task;
- state transition times: `stateTransitionTime ge|gt X` (what a reconciler sends with a watermark) reads only
  the tasks that changed since X, `lt|le X` only those unchanged since X (when that is a small part of the job,
  as for a cleanup's "completed before" in a job that rotates). Entries are appended as transitions happen
  (the clock moves forward); a task's older entries go stale and are dropped when they outnumber the live ones;
- tasks by state: `state eq 'completed'` reads only those (when they are a small part of the job);
- task counts and slot counts by state and result: get task counts is a copy of the counters.
A task that changed is always passed to `saved` (State.save_task/save_tasks) and a removed one to `removed`
(State.forget_task); the job's own forgetting drops the whole index.
"""
from __future__ import annotations

import bisect
import sys
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..timeutil import parse_iso

if TYPE_CHECKING:
    from .records import TaskRecord

COUNTED = ("active", "running", "completed", "succeeded", "failed")
_COMPACT_MIN = 1024


def _bucket(task: TaskRecord) -> tuple[str, str | None, int] | None:
    """(state as counted, succeeded/failed for completed, slots) - what get task counts reports for the task."""
    state = task.state
    if state == "preparing":
        state = "running"
    if state not in ("active", "running", "completed"):
        return None
    outcome = None
    if state == "completed":
        outcome = "succeeded" if (task.doc.get("executionInfo") or {}).get("result") == "success" else "failed"
    return state, outcome, int(task.doc.get("requiredSlots") or 1)


class TaskIndex:
    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._by_seq: dict[int, TaskRecord] = {}
        self._order: list[int] = []                     # seqs ascending; removed ones linger until compaction
        self._times: list[tuple[datetime, int]] = []    # (stateTransitionTime, seq) ascending; stale ones linger
        self._counts = dict.fromkeys(COUNTED, 0)
        self._slots = dict.fromkeys(COUNTED, 0)
        self._states: dict[str, set[int]] = {}         # state -> seqs (a `state eq` filter's candidates)

    def __len__(self) -> int:
        return len(self._by_seq)

    def rebuild(self, tasks: Iterable[TaskRecord]) -> None:
        """From scratch (restart recovery)."""
        self._reset()
        for task in sorted(tasks, key=lambda t: t.seq):
            task.indexed_time = task.indexed_text = task.counted = task.indexed_state = None
            self.saved(task)

    # --- maintenance ---------------------------------------------------------------------------------------
    def saved(self, task: TaskRecord) -> None:
        seq = task.seq
        if seq not in self._by_seq:
            self._by_seq[seq] = task
            if self._order and seq < self._order[-1]:
                bisect.insort(self._order, seq)
            else:
                self._order.append(seq)
        text = task.doc.get("stateTransitionTime")
        if text != task.indexed_text:
            moment = parse_iso(text) if text else None
            task.indexed_text, task.indexed_time = text, moment
            if moment is not None:
                entry = (moment, seq)
                if self._times and entry < self._times[-1]:
                    bisect.insort(self._times, entry)
                else:
                    self._times.append(entry)
                if len(self._times) > 2 * len(self._by_seq) + _COMPACT_MIN:
                    self._times = sorted((t.indexed_time, s) for s, t in self._by_seq.items()
                                         if t.indexed_time is not None)
        if task.state != task.indexed_state:
            if task.indexed_state is not None:
                self._states[task.indexed_state].discard(seq)
            self._states.setdefault(task.state, set()).add(seq)
            task.indexed_state = task.state
        bucket = _bucket(task)
        if bucket != task.counted:
            self._count(task.counted, -1)
            self._count(bucket, +1)
            task.counted = bucket

    def removed(self, task: TaskRecord) -> None:
        if self._by_seq.pop(task.seq, None) is None:
            return
        self._count(task.counted, -1)
        task.counted = None
        if task.indexed_state is not None:
            self._states[task.indexed_state].discard(task.seq)
            task.indexed_state = None
        if len(self._order) > 2 * len(self._by_seq) + _COMPACT_MIN:
            self._order = [s for s in self._order if s in self._by_seq]

    def _count(self, bucket: tuple[str, str | None, int] | None, sign: int) -> None:
        if bucket is None:
            return
        state, outcome, slots = bucket
        for name in (state, outcome) if outcome else (state,):
            self._counts[name] += sign
            self._slots[name] += sign * slots

    # --- reads ---------------------------------------------------------------------------------------------
    def counts(self) -> dict[str, Any]:
        return {"taskCounts": dict(self._counts), "taskSlotCounts": dict(self._slots)}

    def after(self, position: int | None) -> Iterator[tuple[int, dict[str, Any]]]:
        """(seq, doc) of every task after `position`, in creation order."""
        order, by_seq = self._order, self._by_seq
        start = 0 if position is None else bisect.bisect_right(order, position)
        for i in range(start, len(order)):
            task = by_seq.get(order[i])
            if task is not None:
                yield order[i], task.doc

    def candidates(self, position: int | None, since: datetime | None = None, before: datetime | None = None,
                   state: str | None = None) -> Iterable[tuple[int, dict[str, Any]]]:
        """(seq, doc) after `position` in creation order: every task, or the smaller of the tasks whose current
        stateTransitionTime lies in [since, before] and the tasks in `state`, when that is at most half of the
        job (a larger set costs more to sort than a scan with the filter, which stops at the page's end)."""
        limit = len(self._by_seq) // 2
        by_state = self._states.get(state) if state is not None else None
        in_range = None
        if since is not None or before is not None:
            times = self._times
            lo = 0 if since is None else bisect.bisect_left(times, (since, -1))
            hi = len(times) if before is None else bisect.bisect_right(times, (before, sys.maxsize))
            in_range = (lo, hi)
        range_size = in_range[1] - in_range[0] if in_range else None
        state_size = len(by_state) if by_state is not None else (0 if state is not None else None)
        sizes = [n for n in (range_size, state_size) if n is not None]
        if not sizes or min(sizes) > limit:
            return self.after(position)
        if state_size is not None and (range_size is None or state_size <= range_size):
            seqs = {s for s in (by_state or ()) if position is None or s > position}
        else:
            assert in_range is not None
            seqs = set()
            for i in range(*in_range):
                at, seq = self._times[i]
                task = self._by_seq.get(seq)
                if task is not None and task.indexed_time == at and (position is None or seq > position):
                    seqs.add(seq)
        return [(seq, self._by_seq[seq].doc) for seq in sorted(seqs)]
