"""Resource metrics of the emulator's nodes, measured from the processes their tasks really run.

The service's resource variables (MicrosoftDocs batch-automatic-scaling.md, "Read-only service-defined
variables"): ``$CPUPercent`` "the average percentage of CPU usage", ``$WallClockSeconds`` "the number of
seconds consumed", ``$MemoryBytes`` / ``$DiskBytes`` "the average number of megabytes / gigabytes used",
``$DiskReadBytes`` / ``$DiskWriteBytes`` / ``$DiskReadOps`` / ``$DiskWriteOps`` and ``$NetworkInBytes`` /
``$NetworkOutBytes`` "the number of ...". So per pool sample: CPU, memory and disk use are averaged over the
pool's nodes, the counters are summed. We publish bytes, as the names say (the table's "megabytes" and
"gigabytes" contradict the names; unverified which is right).

How a node is measured (an emulated node is a directory, ``<work>/nodes/<pool>/<node>``, sharing the host):

* a thread polls the emulator's descendant processes every ``poll_seconds``; a process belongs to the node
  whose directory holds its working directory (tasks and start tasks run inside it);
* between two samples it accumulates each process's own CPU seconds (user + system, never its children's,
  so a shell and its ffmpeg are not counted twice), its disk I/O (psutil ``io_counters``: bytes and
  read/write calls), and wall-clock seconds per task process; a process that ends between two polls loses
  at most one poll interval of counts;
* at sample time it reads the node's processes' resident memory and the bytes stored under its directory;
* network: the node's storage transfers (resource files in, output files and logs out), which the emulator
  makes on the node's behalf, reported through ``record_transfer``;
* ``$CPUPercent`` of a node = CPU seconds / (period x the host's cores) x 100: a node is as big as the host.

The scheduler takes one pool sample per ``sample_period`` (``pool_sample``); visibility to formulas is
delayed by the sample lag elsewhere (backend/autoscaling.py).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger("devstack.batch_emulator.node_metrics")

RESOURCE_METRICS = ("$CPUPercent", "$WallClockSeconds", "$MemoryBytes", "$DiskBytes", "$DiskReadBytes",
                    "$DiskWriteBytes", "$DiskReadOps", "$DiskWriteOps", "$NetworkInBytes", "$NetworkOutBytes")
_AVERAGED = ("$CPUPercent", "$MemoryBytes", "$DiskBytes")
_COUNTERS = ("cpu", "wall", "read_bytes", "write_bytes", "read_ops", "write_ops", "net_in", "net_out")

NodeKey = tuple[str, str]  # (pool key, node id) as they appear in the node's directory path


@dataclass
class _Tracked:
    node: NodeKey
    cpu: float
    io: tuple[int, int, int, int]


def _zero() -> dict[str, float]:
    return dict.fromkeys(_COUNTERS, 0.0)


_INSTANCES: set[NodeMetrics] = set()
_INSTANCES_LOCK = threading.Lock()


def record_transfer(path: str | Path, nbytes: int, inbound: bool) -> None:
    """A storage transfer of ``nbytes`` into (``inbound``) or out of ``path``, made for the node holding it."""
    with _INSTANCES_LOCK:
        instances = list(_INSTANCES)
    for instance in instances:
        instance.add_transfer(path, nbytes, inbound)


class NodeMetrics:
    """Per-node resource usage of the processes under ``nodes_root``; thread-safe."""

    def __init__(self, nodes_root: Path, poll_seconds: float = 0.5, cores: int | None = None) -> None:
        self._root = nodes_root.resolve()
        self._poll = poll_seconds
        self.cores = cores or os.cpu_count() or 1
        self._lock = threading.Lock()
        self._counters: dict[NodeKey, dict[str, float]] = {}   # since the node's last sample
        self._memory: dict[NodeKey, float] = {}                # resident bytes at the last poll
        self._tracked: dict[tuple[int, float], _Tracked] = {}
        self._last_poll = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="batch-node-metrics", daemon=True)
        self._me = psutil.Process()

    # --- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        with _INSTANCES_LOCK:
            _INSTANCES.add(self)
        self._thread.start()

    def stop(self) -> None:
        with _INSTANCES_LOCK:
            _INSTANCES.discard(self)
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self._poll):
            try:
                self.poll()
            except Exception:  # a measurement bug must never stop the emulator
                log.exception("node metrics poll failed")

    # --- measurement -------------------------------------------------------------------------------------
    def node_of(self, path: str | Path) -> NodeKey | None:
        try:
            parts = Path(path).resolve().relative_to(self._root).parts
        except (ValueError, OSError):
            return None
        return (parts[0], parts[1]) if len(parts) >= 2 else None

    def poll(self) -> None:
        """Read every descendant process once and add what it used since the last poll to its node."""
        now = time.monotonic()
        elapsed, self._last_poll = now - self._last_poll, now
        seen: dict[tuple[int, float], _Tracked] = {}
        memory: dict[NodeKey, float] = {}
        running: dict[NodeKey, int] = {}
        deltas: dict[NodeKey, dict[str, float]] = {}
        for proc in self._me.children(recursive=True):
            try:
                with proc.oneshot():
                    node = self.node_of(proc.cwd())
                    if node is None:
                        continue
                    key = (proc.pid, proc.create_time())
                    times = proc.cpu_times()
                    cpu = times.user + times.system
                    rss = float(proc.memory_info().rss)
                    io = _io(proc)
                    parent = proc.ppid()
            except (psutil.Error, OSError):
                continue  # ended or unreadable meanwhile
            previous = self._tracked.get(key)
            base_cpu, base_io = (previous.cpu, previous.io) if previous else (0.0, (0, 0, 0, 0))
            d = deltas.setdefault(node, _zero())
            d["cpu"] += max(0.0, cpu - base_cpu)
            for name, now_value, before in zip(("read_bytes", "write_bytes", "read_ops", "write_ops"), io, base_io):
                d[name] += max(0, now_value - before)
            if parent == self._me.pid:  # a task's own process: its wall clock counts once per task
                running[node] = running.get(node, 0) + 1
            memory[node] = memory.get(node, 0.0) + rss
            seen[key] = _Tracked(node, cpu, io)
        with self._lock:
            self._tracked = seen
            self._memory = memory
            for node, values in deltas.items():
                counters = self._counters.setdefault(node, _zero())
                for name, value in values.items():
                    counters[name] += value
            for node, count in running.items():
                self._counters.setdefault(node, _zero())["wall"] += count * elapsed

    def add_transfer(self, path: str | Path, nbytes: int, inbound: bool) -> None:
        node = self.node_of(path)
        if node is None or nbytes <= 0:
            return
        with self._lock:
            self._counters.setdefault(node, _zero())["net_in" if inbound else "net_out"] += nbytes

    # --- samples -----------------------------------------------------------------------------------------
    def pool_sample(self, pool_key: str, node_ids: list[str], period_seconds: float) -> dict[str, float]:
        """One sample of every resource metric for a pool; resets the counters of its nodes."""
        with self._lock:
            taken = [(self._counters.pop((pool_key, node_id), None) or _zero(),
                      self._memory.get((pool_key, node_id), 0.0)) for node_id in node_ids]
            for key in [k for k in self._counters if k[0] == pool_key and k[1] not in node_ids]:
                del self._counters[key]  # nodes that left the pool
        per_node = [(counters, memory, _bytes_under(self._root / pool_key / node_id))
                    for (counters, memory), node_id in zip(taken, node_ids)]
        return aggregate(per_node, period_seconds, self.cores)


def aggregate(per_node: list[tuple[dict[str, float], float, float]], period_seconds: float,
              cores: int) -> dict[str, float]:
    """Pool values from each node's (counters, memory bytes, disk bytes): averages and sums as the doc says."""
    count = len(per_node)
    if count == 0:
        return dict.fromkeys(RESOURCE_METRICS, 0.0)
    capacity = max(period_seconds, 1e-9) * cores
    total = {name: sum(c[name] for c, _, _ in per_node) for name in _COUNTERS}
    return {
        "$CPUPercent": min(100.0, sum(100.0 * c["cpu"] / capacity for c, _, _ in per_node) / count),
        "$WallClockSeconds": total["wall"],
        "$MemoryBytes": sum(m for _, m, _ in per_node) / count,
        "$DiskBytes": sum(d for _, _, d in per_node) / count,
        "$DiskReadBytes": total["read_bytes"],
        "$DiskWriteBytes": total["write_bytes"],
        "$DiskReadOps": total["read_ops"],
        "$DiskWriteOps": total["write_ops"],
        "$NetworkInBytes": total["net_in"],
        "$NetworkOutBytes": total["net_out"],
    }


def _io(proc: psutil.Process) -> tuple[int, int, int, int]:
    counters = getattr(proc, "io_counters", None)  # not on macOS
    if counters is None:
        return (0, 0, 0, 0)
    io = counters()
    return (io.read_bytes, io.write_bytes, io.read_count, io.write_count)


def _bytes_under(directory: Path) -> float:
    total = 0
    for dirpath, _dirs, files in os.walk(directory, followlinks=False):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return float(total)
