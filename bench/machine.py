"""The machine and revision a result was measured on: date, nproc, CPU model, memory, Python, git commit."""
from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Machine:
    date: str
    nproc: int
    cpu_model: str
    memory_gib: float
    python: str
    kernel: str
    commit: str
    load_1min: float       # at the start: other work on the machine makes figures noisier


    def describe(self) -> str:
        return (f"{self.date}; {self.nproc} CPU ({self.cpu_model}); {self.memory_gib:.0f} GiB RAM; "
                f"Python {self.python}; Linux {self.kernel}; commit {self.commit}; "
                f"load average {self.load_1min:.1f} at start")

    def to_json(self) -> dict:
        return asdict(self)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1024 * 1024)
    except OSError:
        pass
    return 0.0


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def current() -> Machine:
    return Machine(date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                   nproc=os.cpu_count() or 1, cpu_model=_cpu_model(), memory_gib=_memory_gib(),
                   python=platform.python_version(), kernel=platform.release(), commit=_commit(),
                   load_1min=os.getloadavg()[0])
