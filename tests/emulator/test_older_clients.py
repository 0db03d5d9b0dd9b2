"""Older clients no one here wrote: the msrest-based azure-batch 14.x (what the az CLI bundles) must work for the
operations it shares with 15.1.0. Needs a second interpreter with that SDK, e.g.
    python -m venv /tmp/oldbatch && /tmp/oldbatch/bin/pip install azure-batch==14.2.0
    BATCH_EMULATOR_OLD_SDK_PYTHON=/tmp/oldbatch/bin/python pytest tests/emulator/test_older_clients.py
Skipped when that interpreter is not configured (it cannot share the venv with azure-batch 15)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

OLD_PYTHON = os.environ.get("BATCH_EMULATOR_OLD_SDK_PYTHON")
SCRIPT = Path(__file__).parent / "clients" / "azure_batch_14.py"


@pytest.mark.skipif(not OLD_PYTHON, reason="set BATCH_EMULATOR_OLD_SDK_PYTHON to a python with azure-batch 14.x")
def test_azure_batch_14_sdk_round_trip(batch_emulator):
    emu = batch_emulator
    result = subprocess.run([OLD_PYTHON, str(SCRIPT), emu.url, emu.account_name, emu.account_key],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "pool exists True" in out
    assert "states ['completed'] 6" in out
    assert "paged filtered 6" in out
    assert "error code TaskExists" in out
    assert "resize ok resizing" in out
    ops = emu.stats()["byOperationStatus"]
    assert ops["Task_List"]["200"] >= 4  # the filtered listing followed nextLinks (maxresults=2)
