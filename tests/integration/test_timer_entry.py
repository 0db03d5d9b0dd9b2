"""The timer function as the host sees it: its binding, and one past-due invocation through function_app."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from azure.functions.timer import TimerRequest

import function_app
from shared import runtime
from shared.ledger import STATUS_PARTITION
from shared.ledger import SUMMARY_ROW
from tests.integration.test_timer import make_stack

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, function_app
fns = function_app.app.get_functions()
print(json.dumps({f.get_function_name(): json.loads(f.get_function_json()) for f in fns}))
"""


def test_timer_binding_is_a_monitored_schedule_from_a_setting():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=dict(os.environ), capture_output=True,
                         text=True, check=True).stdout
    functions = json.loads(out.strip().splitlines()[-1])
    binding = functions["reconcile_and_scale"]["bindings"][0]
    assert binding == {"direction": "IN", "type": "timerTrigger", "name": "timer", "schedule": "%TIMER_SCHEDULE%",
                       "runOnStartup": False, "useMonitor": True}
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    assert sample["TIMER_SCHEDULE"] == "0 */1 * * * *"


def test_past_due_invocation_runs_a_tick(storage_connection_string, batch_emulator_factory):
    stack = make_stack(storage_connection_string, batch_emulator_factory())
    runtime.set_timer_service(stack.timer)
    try:
        function_app.reconcile_and_scale(TimerRequest(past_due=True))
        status = stack.table.get_entity(STATUS_PARTITION, SUMMARY_ROW)
        assert status["PoolExists"] is False and status["LastTickAt"] is not None
        assert "LastTickError" not in status
    finally:
        runtime.set_timer_service(None)
        stack.service.clients.batch.close()
        stack.batch.close()
