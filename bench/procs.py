"""Child processes with their resource usage, and CPU time of running processes read from /proc."""
from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ChildRun:
    wall: float          # seconds, spawn to exit
    cpu: float           # user + system seconds of the child (and its waited-for descendants)
    returncode: int


def run_measured(argv: Sequence[str], cwd: Path, env: Mapping[str, str], stderr_path: Path | None = None) -> ChildRun:
    """Run `argv` to completion; wall clock and the child's own rusage (os.wait4), not the whole host's."""
    err = open(stderr_path, "wb") if stderr_path else subprocess.DEVNULL
    try:
        started = time.perf_counter()
        proc = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    finally:
        if stderr_path:
            err.close()
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # reaped by wait4: tell Popen, so it does not wait again
    return ChildRun(wall=wall, cpu=usage.ru_utime + usage.ru_stime, returncode=code)


def cpu_split(pid: int) -> tuple[float, float]:
    """(own, reaped children's) user + system CPU seconds of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # fields after the command: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / _CLK_TCK, (cutime + cstime) / _CLK_TCK


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process, including children it has waited for (cutime/cstime)."""
    own, children = cpu_split(pid)
    return own + children


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and all its live descendants (each including its reaped children)."""
    total = 0.0
    for p in [pid, *descendants(pid)]:
        try:
            total += cpu_seconds(p)
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    return total


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found
