"""Unit tests of the benchmark suite's own logic (bench/): summaries, request shapes, profile parsing, the
report's verdicts, and the cost model's use of the app's scaling code. Fast; no stack is started."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench import cost_model, report
from bench.counting import _shape
from bench.machine import Machine
from bench.model import Chart, Finding, ItemResult
from bench.profile import parse_raw
from bench.stats import median, percentile

MACHINE = Machine(date="2026-01-01 00:00 UTC", nproc=2, cpu_model="Test CPU", memory_gib=4.0, python="3.11.7",
                  kernel="6.0", commit="abc1234", load_1min=0.5)


def test_percentile_is_nearest_rank():
    values = list(range(1, 21))  # 1..20
    assert percentile(values, 95) == 19
    assert percentile(values, 50) == 10
    assert percentile([5.0], 95) == 5.0
    assert median([3, 1, 2]) == 2
    with pytest.raises(ValueError):
        percentile([], 50)


@pytest.mark.parametrize("service,path,shape", [
    ("batch", "/jobs/job-1/tasks", "/jobs/*/tasks"),
    ("batch", "/pools/p/resize", "/pools/*/resize"),
    ("table", "/devstoreaccount1/ledgerabc", "/<table>"),
    ("table", "/devstoreaccount1/ledgerabc(PartitionKey='j',RowKey='r')", "/<table>(keys)"),
    ("table", "/devstoreaccount1/Tables", "/Tables"),
    ("table", "/devstoreaccount1/$batch", "/$batch"),
    ("blob", "/devstoreaccount1/in/a/b.mp4", "/container/blob"),
    ("blob", "/devstoreaccount1/out", "/container"),
])
def test_request_shapes_hide_names(service, path, shape):
    assert _shape(service, path) == shape


def test_profile_parse_counts_own_and_inclusive_frames():
    text = "\n".join([
        "process 1:python;thread (0x1);run (devstack/batch_emulator/executor.py:10);"
        "create_default_context (ssl.py:770) 30",
        "process 1:python;thread (0x1);run (devstack/batch_emulator/executor.py:10);write (shared/ledger.py:5) 10",
        "garbage line without count",
    ])
    profile = parse_raw("emulator", text)
    assert profile.samples == 40
    assert profile.own.most_common(1)[0] == ("create_default_context (ssl.py)", 30)
    assert profile.inclusive["run (devstack/batch_emulator/executor.py)"] == 40
    assert profile.top(1)[0].strip().startswith("75.0%")
    assert profile.hotspots(1) == ["75% in create_default_context (ssl.py) via run (devstack/batch_emulator/executor.py)"]


def _item(met: bool | None, error: str | None = None) -> ItemResult:
    return ItemResult(key="9", title="demo", baseline="b", target="t", error=error,
                      findings=[Finding("wall", "1.2 s", "1.0 s", 1.2, "<= 1.15x", met)],
                      columns=["a"], rows=[["x|y"]], notes=["a note"],
                      chart=Chart("demo", "s", ["g"], {"ours": [1.2], "base": [1.0]}))


def test_report_marks_missed_targets_and_failures(tmp_path: Path):
    text = report.markdown([_item(False), _item(None, error="RuntimeError: boom")], MACHINE, "cmd", "quick", 60, None)
    assert "**MISSED**" in text and "**FAILED**" in text
    assert "x\\|y" in text  # table cells are escaped
    assert "Test CPU" in text and "abc1234" in text
    assert report.ratio_text(0.0014) == "0.0014x" and report.ratio_text(1.234) == "1.23x"
    paths = report.write([_item(True)], MACHINE, tmp_path, "t", "cmd", "quick", 1.0)
    assert paths["png"].stat().st_size > 1000
    assert "met" in paths["markdown"].read_text()


def test_item_verdict_combines_findings():
    assert _item(True).targets_met is True
    assert _item(False).targets_met is False
    assert _item(None).targets_met is None
    assert _item(True, error="x").targets_met is False


def test_cost_model_uses_the_apps_formula_and_timer():
    """On a short bursty day the timer beats the formula alone and the fixed pool; every task finishes."""
    outcomes = {d: cost_model.simulate(d, cost_model.QUICK_DAY, 6.0) for d in cost_model.DESIGNS}
    ours, auto, fixed = (outcomes[d] for d in cost_model.DESIGNS)
    assert ours.busy_seconds == pytest.approx(auto.busy_seconds, rel=0.01)
    assert ours.node_seconds < auto.node_seconds < fixed.node_seconds
    assert ours.burst_first_start_median < auto.burst_first_start_median
    assert auto.evaluations > 0 and auto.evaluation_errors == 0  # the emulator's engine ran the app's formula
    assert ours.pool_calls > 0 and auto.pool_calls == 0           # only the timer calls the pool API
    assert ours.nodes_at_end == 0 and auto.nodes_at_end == 0
