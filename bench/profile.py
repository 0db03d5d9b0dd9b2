"""py-spy profiles of the stack's Python processes while a benchmark round runs, summarised as text.

`py-spy record --format raw` writes collapsed stacks ("frame;frame;... count"); idle threads are not
sampled (py-spy's default), so the counts say where each process spends CPU. The summary lists the
functions with the most samples at the top of the stack (own time) and the app/devstack functions
with the most samples anywhere on the stack (inclusive time).
"""
from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

_PY_SPY = Path(sys.executable).parent / "py-spy"
_OURS = re.compile(r"\((?:shared|devstack|function_app|bench)[/.]")
# Leaf frames that mean "waiting", not working: excluded when naming hotspots.
_WAITING = ("Condition.wait", "EpollSelector.select", "SocketIO.readinto", "Event.wait", "sleep", "do_poll",
            "_wait_for_tstate_lock", "Lock.acquire")


def available() -> bool:
    return _PY_SPY.exists() or shutil.which("py-spy") is not None


@dataclass
class Profile:
    name: str
    samples: int = 0
    own: Counter = field(default_factory=Counter)
    inclusive: Counter = field(default_factory=Counter)
    callers: Counter = field(default_factory=Counter)   # (leaf frame, innermost frame of our code) -> samples

    def top(self, n: int = 8) -> list[str]:
        if not self.samples:
            return []
        return [f"{count / self.samples:5.1%} {frame}" for frame, count in self.own.most_common(n)]

    def hotspots(self, n: int = 3) -> list[str]:
        """The busiest working (not waiting) leaf frames, each with the frame of our code that led there."""
        if not self.samples:
            return []
        working = [(key, c) for key, c in self.callers.most_common() if not key[0].startswith(_WAITING)]
        return [f"{c / self.samples:.0%} in {leaf}" + (f" via {ours}" if ours and ours != leaf else "")
                for (leaf, ours), c in working[:n]]

    def top_ours(self, n: int = 8) -> list[str]:
        if not self.samples:
            return []
        return [f"{count / self.samples:5.1%} {frame}" for frame, count in self.inclusive.most_common(n)]


def _short(frame: str) -> str:
    # "func (path/to/module.py:123)" -> "func (module.py)"; keeps the package for our code
    match = re.match(r"(.*) \((.*?):\d+\)$", frame.strip())
    if not match:
        return frame.strip()
    func, path = match.groups()
    parts = Path(path).parts
    for anchor in ("shared", "devstack", "bench", "site-packages"):
        if anchor in parts:
            i = parts.index(anchor)
            return f"{func} ({'/'.join(parts[i + (1 if anchor == 'site-packages' else 0):])})"
    return f"{func} ({Path(path).name})"


def parse_raw(name: str, text: str) -> Profile:
    profile = Profile(name)
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if f and not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        profile.samples += n
        profile.own[_short(frames[-1])] += n
        ours = next((_short(f) for f in reversed(frames) if _OURS.search(f)), "")
        profile.callers[(_short(frames[-1]), ours)] += n
        for frame in {_short(f) for f in frames if _OURS.search(f)}:
            profile.inclusive[frame] += n
    return profile


class Recorder:
    """Start `py-spy record` on some pids; `stop()` ends them (SIGINT makes py-spy write) and parses."""

    def __init__(self, pids: dict[str, int], out_dir: Path, rate: int = 50) -> None:
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self._procs: dict[str, tuple[subprocess.Popen, Path]] = {}
        exe = str(_PY_SPY) if _PY_SPY.exists() else "py-spy"
        for name, pid in pids.items():
            path = out_dir / f"{name}.collapsed.txt"
            proc = subprocess.Popen([exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
                                     "--nonblocking", "--output", str(path)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self._procs[name] = (proc, path)

    def stop(self, timeout: float = 30) -> dict[str, Profile]:
        profiles = {}
        for name, (proc, path) in self._procs.items():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for name, (proc, path) in self._procs.items():
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            profiles[name] = parse_raw(name, path.read_text(errors="replace") if path.exists() else "")
        return profiles
