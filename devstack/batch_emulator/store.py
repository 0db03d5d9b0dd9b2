"""Persistence of emulator state: JSON documents keyed by (kind, key), write-through.

`Store` is the interface; `SqliteStore` (stdlib sqlite3, WAL) is the default so that a restart loses nothing, and
`MemoryStore` keeps the same contract in memory. The backend holds the live state and writes every change through
before answering, so the store never needs to be queried on the hot path - only `load` at start-up.

Durability: WAL with synchronous=NORMAL keeps every committed transaction across a *process* crash (the case the
emulator promises); only an OS crash/power loss may drop the last transactions.
"""
from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol

Doc = dict[str, Any]

POOL = "pool"
JOB = "job"
TASK = "task"
NODE = "node"
META = "meta"


class Store(Protocol):
    def load(self, kind: str) -> Iterator[tuple[str, str, Doc]]:
        """(key, parent, doc) of every record of `kind`, in first-insertion order."""

    def put(self, kind: str, key: str, doc: Doc, parent: str = "") -> None: ...

    def put_many(self, kind: str, items: Iterable[tuple[str, Doc, str]]) -> None:
        """Insert or replace (key, doc, parent) items."""

    def delete(self, kind: str, key: str) -> None: ...

    def delete_children(self, kind: str, parent: str) -> None: ...

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Group writes into one transaction (nestable)."""

    def close(self) -> None: ...


def _dumps(doc: Doc) -> str:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


class SqliteStore:
    SCHEMA = """
    CREATE TABLE IF NOT EXISTS records (
        seq    INTEGER PRIMARY KEY AUTOINCREMENT,
        kind   TEXT NOT NULL,
        key    TEXT NOT NULL,
        parent TEXT NOT NULL DEFAULT '',
        doc    TEXT NOT NULL,
        UNIQUE (kind, key)
    );
    CREATE INDEX IF NOT EXISTS records_parent ON records (kind, parent);
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # One connection shared under a lock: callers already serialise through the backend lock; the lock here
        # keeps the store safe on its own.
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(self.SCHEMA)
        self._lock = threading.RLock()
        self._depth = 0

    def load(self, kind: str) -> Iterator[tuple[str, str, Doc]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT key, parent, doc FROM records WHERE kind = ? ORDER BY seq", (kind,)).fetchall()
        for key, parent, doc in rows:
            yield key, parent, json.loads(doc)

    def put(self, kind: str, key: str, doc: Doc, parent: str = "") -> None:
        self.put_many(kind, [(key, doc, parent)])

    def put_many(self, kind: str, items: Iterable[tuple[str, Doc, str]]) -> None:
        rows = [(kind, key, parent, _dumps(doc)) for key, doc, parent in items]
        with self._lock:
            self._conn.executemany(
                "INSERT INTO records (kind, key, parent, doc) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (kind, key) DO UPDATE SET doc = excluded.doc, parent = excluded.parent", rows)

    def delete(self, kind: str, key: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM records WHERE kind = ? AND key = ?", (kind, key))

    def delete_children(self, kind: str, parent: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM records WHERE kind = ? AND parent = ?", (kind, parent))

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._conn.execute("BEGIN")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if outer:
                    self._conn.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class MemoryStore:
    """Same contract, nothing on disk (state ends with the process)."""

    def __init__(self) -> None:
        self._data: dict[str, dict[str, tuple[str, str]]] = {}
        self._lock = threading.RLock()

    def load(self, kind: str) -> Iterator[tuple[str, str, Doc]]:
        with self._lock:
            rows = list(self._data.get(kind, {}).items())
        for key, (parent, doc) in rows:
            yield key, parent, json.loads(doc)

    def put(self, kind: str, key: str, doc: Doc, parent: str = "") -> None:
        self.put_many(kind, [(key, doc, parent)])

    def put_many(self, kind: str, items: Iterable[tuple[str, Doc, str]]) -> None:
        with self._lock:
            table = self._data.setdefault(kind, {})
            for key, doc, parent in items:
                table[key] = (parent, _dumps(doc))

    def delete(self, kind: str, key: str) -> None:
        with self._lock:
            self._data.get(kind, {}).pop(key, None)

    def delete_children(self, kind: str, parent: str) -> None:
        with self._lock:
            table = self._data.get(kind, {})
            for key in [k for k, (p, _) in table.items() if p == parent]:
                del table[key]

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        with self._lock:
            yield

    def close(self) -> None:
        pass


def open_store(data_dir: Path | None) -> Store:
    return MemoryStore() if data_dir is None else SqliteStore(data_dir / "state.sqlite3")
