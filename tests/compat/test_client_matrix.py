"""Opt-in: the slow clients (older azure-batch releases and the ffmpeg tutorial flow in throwaway venvs, the az
CLI with a dev-host upload), each through `python -m devstack.compat --clients KEY` in its own process.

    DEVSTACK_COMPAT=1 pytest tests/compat/test_client_matrix.py             # every slow client
    DEVSTACK_COMPAT=sdk-14.2.0,azcli pytest tests/compat/test_client_matrix.py
    AZ_CLI=/path/to/az ...                                                   # else `az` on PATH, else pip-installed

Venvs are cached ($DEVSTACK_COMPAT_VENVS or <tmp>/devstack-compat-venvs), so only the first run downloads.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.compat.clients import CLIENTS

ROOT = Path(__file__).resolve().parents[2]
SELECTED = os.environ.get("DEVSTACK_COMPAT", "")
SLOW = [c.key for c in CLIENTS if c.slow]
WANTED = SLOW if SELECTED.lower() in ("1", "all", "true", "yes") else [k for k in SELECTED.split(",") if k]

pytestmark = pytest.mark.skipif(not WANTED, reason="opt-in: set DEVSTACK_COMPAT=1 (or a comma list of clients)")


@pytest.mark.timeout(2400)  # a first run installs the client (azure-cli takes minutes)
@pytest.mark.parametrize("key", WANTED or ["none"])
def test_client_passes_against_the_local_stack(key, tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, "-m", "devstack.compat", "--clients", key, "--work", str(tmp_path / "w"),
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=2300)
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    [result] = json.loads(out.read_text())
    failures = [(s["name"], s["detail"]) for s in result["steps"] if not s["ok"]]
    assert result["setup_error"] is None, result["setup_error"]
    assert result["ok"], failures
    assert proc.returncode == 0
