"""In-memory records of pools, nodes, jobs and tasks.

Each record holds `doc` - the resource exactly as the wire shows it (camelCase JSON) - and `sys` - persisted
internal state the wire never shows. Docs are copy-on-write: a change replaces `doc` (and any nested object it
touches) with a new dict instead of mutating it, so a reference taken under the backend lock stays a consistent
snapshot that the HTTP layer can serialise after releasing the lock.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .. import ids
from ..timeutil import iso, new_etag
from .task_index import TaskIndex

Doc = dict[str, Any]


class _Record:
    doc: Doc
    sys: Doc

    @property
    def id(self) -> str:
        return self.doc["id"]

    @property
    def key(self) -> str:
        return ids.key(self.doc["id"])

    @property
    def state(self) -> str:
        return self.doc.get("state", "")

    def set(self, **changes: Any) -> None:
        """Replace top-level fields (None removes a field)."""
        doc = dict(self.doc)
        for name, value in changes.items():
            if value is None:
                doc.pop(name, None)
            else:
                doc[name] = value
        self.doc = doc

    def set_in(self, obj: str, **changes: Any) -> None:
        """Replace fields of a nested object (None removes a field)."""
        inner = dict(self.doc.get(obj) or {})
        for name, value in changes.items():
            if value is None:
                inner.pop(name, None)
            else:
                inner[name] = value
        self.set(**{obj: inner})

    def touch(self, now: datetime) -> None:
        """New eTag and lastModified: the resource's data changed."""
        self.set(eTag=new_etag(now), lastModified=iso(now))

    def transition(self, new_state: str, now: datetime, *, touch: bool = True) -> None:
        """Move to `new_state`, recording previousState and the transition times like the service."""
        old = self.doc.get("state")
        if old == new_state:
            return
        changes: Doc = {"state": new_state, "stateTransitionTime": iso(now)}
        if old is not None and self._tracks_previous_state:
            changes["previousState"] = old
            changes["previousStateTransitionTime"] = self.doc.get("stateTransitionTime")
        self.set(**changes)
        if touch:
            self.touch(now)

    _tracks_previous_state = True

    def persisted(self) -> Doc:
        return {"doc": self.doc, "sys": self.sys}


@dataclass(eq=False)
class NodeRecord(_Record):
    pool_key: str
    doc: Doc
    sys: Doc = field(default_factory=dict)
    # runtime only: task ref -> cancel event of the process running it
    cancels: dict[str, threading.Event] = field(default_factory=dict)
    start_task_cancel: threading.Event | None = None

    _tracks_previous_state = False

    @property
    def store_key(self) -> str:
        return f"{self.pool_key}/{self.doc['id']}"

    @property
    def is_dedicated(self) -> bool:
        return bool(self.doc.get("isDedicated", True))

    @property
    def running(self) -> dict[str, int]:
        """task ref ("jobkey/taskkey") -> slots it occupies."""
        return self.sys.setdefault("running", {})

    @property
    def used_slots(self) -> int:
        return sum(self.running.values())

    @property
    def leaving(self) -> str | None:
        """The deallocation option when the node is being removed, else None."""
        return self.sys.get("leaving")


@dataclass(eq=False)
class PoolRecord(_Record):
    doc: Doc
    sys: Doc = field(default_factory=dict)
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    # runtime only: autoscale metric samples (name -> list of (time, value)), newest last
    samples: dict[str, list[tuple[datetime, float]]] = field(default_factory=dict)
    formula: Any = None  # compiled autoscale formula (runtime cache)
    # runtime only: tasks of this pool that completed since the last metric sample
    completions: dict[str, int] = field(default_factory=lambda: {"succeeded": 0, "failed": 0})

    _tracks_previous_state = False

    def nodes_of(self, dedicated: bool) -> list[NodeRecord]:
        return [n for n in self.nodes.values() if n.is_dedicated == dedicated]


@dataclass(eq=False)
class TaskRecord(_Record):
    job_key: str
    doc: Doc
    sys: Doc = field(default_factory=dict)
    cancel: threading.Event | None = None  # runtime: set to stop the running process
    # runtime, kept by the job's TaskIndex: the stateTransitionTime and state it indexed, the counts bucket it holds
    indexed_text: str | None = field(default=None, repr=False)
    indexed_time: datetime | None = field(default=None, repr=False)
    counted: tuple[str, str | None, int] | None = field(default=None, repr=False)
    indexed_state: str | None = field(default=None, repr=False)
    retention_for: str | None = field(default=None, repr=False)  # the completedAt its retention is scheduled for

    @property
    def ref(self) -> str:
        return f"{self.job_key}/{self.key}"

    @property
    def seq(self) -> int:
        return self.sys["seq"]


@dataclass(eq=False)
class JobRecord(_Record):
    doc: Doc
    sys: Doc = field(default_factory=dict)
    tasks: dict[str, TaskRecord] = field(default_factory=dict)  # task key -> record, in seq order
    index: TaskIndex = field(default_factory=TaskIndex, repr=False)  # runtime: order, change times, counts

    @property
    def pool_key(self) -> str | None:
        pool_id = (self.doc.get("poolInfo") or {}).get("poolId")
        return ids.key(pool_id) if pool_id else None
