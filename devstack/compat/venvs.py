"""Throwaway virtual environments, one per client under test, cached between runs.

Old azure-batch releases cannot share the project's venv (they pin msrest-era dependencies and install the same
`azure.batch` package), so each client gets its own venv under a cache directory outside the repository
(`$DEVSTACK_COMPAT_VENVS`, else `<tmp>/devstack-compat-venvs`): `.devstack/` is wiped by other runs. A venv is
reused only when it was completely built for exactly the same requirements (a marker written last); a lock
file serialises concurrent builds of the same venv.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

READY_MARKER = ".compat-ready"


class VenvError(RuntimeError):
    pass


def default_cache_dir() -> Path:
    configured = os.environ.get("DEVSTACK_COMPAT_VENVS")
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "devstack-compat-venvs"


def venv_dir(cache: Path, key: str, requirements: Sequence[str]) -> Path:
    digest = hashlib.sha256("\n".join(sorted(requirements)).encode()).hexdigest()[:10]
    return cache / f"{key}-{digest}"


def python_of(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(cache: Path, key: str, requirements: Sequence[str], *, base_python: str | None = None,
                timeout: float = 900.0) -> Path:
    """Return the python of a venv holding `requirements`, building it (pip, from the package index) if needed."""
    target = venv_dir(cache, key, requirements)
    marker = target / READY_MARKER
    wanted = "\n".join(requirements)
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs building the same venv wait for each other
        if marker.exists() and marker.read_text() == wanted and python_of(target).exists():
            return python_of(target)
        shutil.rmtree(target, ignore_errors=True)  # an interrupted build: no marker, start over
        python = base_python or _base_interpreter()
        _run([python, "-m", "venv", str(target)], timeout=120, what=f"create venv for {key}")
        _run([str(python_of(target)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
              "--no-input", *requirements], timeout=timeout, what=f"pip install {' '.join(requirements)}")
        marker.write_text(wanted)  # last: only a complete venv is ever reused
    return python_of(target)


def _base_interpreter() -> str:
    # The interpreter behind the project's venv (a venv made from inside a venv still works, but this keeps the
    # client venvs independent of the project's site-packages).
    return getattr(sys, "_base_executable", None) or sys.executable


def _run(argv: list[str], *, timeout: float, what: str) -> None:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise VenvError(f"{what}: timed out after {timeout:.0f}s") from None
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise VenvError(f"{what}: exit {result.returncode}: {' | '.join(tail)}")
