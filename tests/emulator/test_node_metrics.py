"""Resource metrics from the task processes the emulator runs, and the sample lag (issue 16).

Doc (MicrosoftDocs batch-automatic-scaling.md): samples "every 30 seconds", "It takes approximately one minute
for samples to propagate through the system"; $CPUPercent / $MemoryBytes / $DiskBytes are averages, the other
resource variables counts ("the number of ...").
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from azure.batch import models as m

from devstack.batch_emulator.backend.autoscaling import inputs_for, sample_lag
from devstack.batch_emulator.backend.records import PoolRecord
from devstack.batch_emulator.config import EmulatorConfig
from devstack.batch_emulator.node_metrics import NodeMetrics, aggregate

from .helpers import job_options, pool_options, shell_task, wait_for, wait_task_completed

T0 = datetime(2026, 1, 5, 12, 0, 0, tzinfo=timezone.utc)


def _counters(**values: float) -> dict[str, float]:
    base = dict.fromkeys(("cpu", "wall", "read_bytes", "write_bytes", "read_ops", "write_ops", "net_in",
                          "net_out"), 0.0)
    base.update(values)
    return base


def test_pool_sample_averages_cpu_memory_disk_and_sums_the_counters():
    per_node = [(_counters(cpu=30.0, wall=30.0, write_bytes=100, net_in=7), 1000.0, 50.0),
                (_counters(cpu=0.0, wall=0.0, write_bytes=20, net_out=3), 3000.0, 150.0)]
    sample = aggregate(per_node, period_seconds=30.0, cores=2)
    assert sample["$CPUPercent"] == 25.0          # node 1: 30 s of 60 core-seconds = 50 %; node 2: 0 %
    assert sample["$MemoryBytes"] == 2000.0 and sample["$DiskBytes"] == 100.0
    assert sample["$WallClockSeconds"] == 30.0 and sample["$DiskWriteBytes"] == 120
    assert (sample["$NetworkInBytes"], sample["$NetworkOutBytes"]) == (7, 3)
    assert aggregate([], 30.0, 2)["$CPUPercent"] == 0.0  # a pool without nodes


def test_transfers_count_for_the_node_whose_directory_they_touch(tmp_path):
    metrics = NodeMetrics(tmp_path / "nodes")
    node_dir = tmp_path / "nodes" / "pool1" / "tvmps_1_d" / "workitems" / "j" / "job-1" / "t" / "wd"
    node_dir.mkdir(parents=True)
    (node_dir / "input.mp4").write_bytes(b"x" * 10)
    metrics.add_transfer(node_dir / "input.mp4", 4096, inbound=True)
    metrics.add_transfer(node_dir / "output.mp3", 512, inbound=False)
    metrics.add_transfer(tmp_path / "elsewhere.bin", 99, inbound=True)  # not a node's: ignored
    sample = metrics.pool_sample("pool1", ["tvmps_1_d"], 30.0)
    assert (sample["$NetworkInBytes"], sample["$NetworkOutBytes"]) == (4096, 512)
    assert sample["$DiskBytes"] == 10
    assert metrics.pool_sample("pool1", ["tvmps_1_d"], 30.0)["$NetworkInBytes"] == 0  # taken once


def test_samples_become_visible_after_the_lag():
    pool = PoolRecord(doc={"id": "p"})
    pool.samples["$PendingTasks"] = [(T0 + timedelta(seconds=30 * i), float(i)) for i in range(10)]
    now = T0 + timedelta(seconds=270)  # the newest sample was taken just now
    default = EmulatorConfig(data_dir=None)
    assert sample_lag(default) == timedelta(seconds=60)  # the docs' "approximately one minute" at 30 s
    seen = inputs_for(pool, now, {}, default).samples["$PendingTasks"]
    assert [v for _, v in seen] == [float(i) for i in range(8)]  # the last two (taken < 60 s ago) not yet
    assert len(inputs_for(pool, now, {}, EmulatorConfig(data_dir=None, sample_lag=timedelta(0)))
               .samples["$PendingTasks"]) == 10
    fast = EmulatorConfig(data_dir=None, sample_period=timedelta(seconds=1))
    assert sample_lag(fast) == timedelta(seconds=2)  # two periods when tests shorten the period


CPU_FORMULA = """
cpu = max(0, $CPUPercent.GetSample(TimeInterval_Second * 20, 0));
wall = sum(0, $WallClockSeconds.GetSample(TimeInterval_Second * 20, 0));
memory = max(0, $MemoryBytes.GetSample(TimeInterval_Second * 20, 0));
written = sum(0, $DiskWriteBytes.GetSample(TimeInterval_Second * 20, 0));
disk = max(0, $DiskBytes.GetSample(TimeInterval_Second * 20, 0));
$TargetDedicatedNodes = 1;
"""


def _values(results: str) -> dict[str, float]:
    return {k: float(v) for k, v in re.findall(r"(\w+)=([0-9.eE+-]+)(?:;|$)", results)}


def test_cpu_memory_disk_and_wall_clock_come_from_the_task_processes(batch_emulator_factory):
    emu = batch_emulator_factory(autoscale_min_interval=timedelta(seconds=1), sample_period=timedelta(seconds=0.5),
                                 sample_lag=timedelta(seconds=0), enable_autoscale_min_gap=timedelta(seconds=0),
                                 resource_poll=0.1)
    client = emu.client()
    client.create_pool(pool_options("cpu", enable_auto_scale=True, auto_scale_formula="$TargetDedicatedNodes = 1;",
                                    auto_scale_evaluation_interval=timedelta(minutes=5)))
    client.create_job(job_options("j", "cpu"))
    before = _values(client.evaluate_pool_auto_scale("cpu", m.BatchPoolEvaluateAutoScaleOptions(
        auto_scale_formula=CPU_FORMULA)).results)
    assert before["cpu"] == 0 and before["wall"] == 0  # nothing ran yet
    # Two seconds of busy CPU, 3 MB written to the task directory, 20 MB held in memory.
    script = ("dd if=/dev/zero of=blob bs=1M count=3 2>/dev/null; "
              "python3 -c \"import time; b = bytearray(20_000_000); e = time.time() + 2\n"
              "while time.time() < e: pass\"")
    client.create_task("j", shell_task("burn", script))
    task = wait_task_completed(client, "j", "burn", timeout=60)
    assert task.execution_info.exit_code == 0
    run = wait_for(lambda: client.evaluate_pool_auto_scale("cpu", m.BatchPoolEvaluateAutoScaleOptions(
        auto_scale_formula=CPU_FORMULA)), lambda r: r.error is None and _values(r.results)["wall"] >= 1.5,
        timeout=10, what="the busy task's samples")
    values = _values(run.results)
    assert values["cpu"] > 10          # one busy process on a node as big as the host
    assert values["wall"] < 10
    assert values["memory"] > 10_000_000
    assert values["written"] >= 3 * 1024 * 1024
    assert values["disk"] >= 3 * 1024 * 1024  # the task directory keeps its file (retention)
