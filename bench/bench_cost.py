"""Node-seconds billed vs busy task-seconds for a burst of 50 files with idle time before and after.

Run: `.venv/bin/python -m bench.bench_cost` (simulated time; about a second). Writes bench/results/cost.json.

The pool is the simulator of devstack/pool_sim.py (the one the race tests use): Batch's rules for
resize/autoscale, the app's autoscale formula on lagging 30 s samples, `taskcompletion` scale-in, nodes
billed from allocation until removal. Timeline: 30 min idle, 50 uploads within one minute, then idle
until minute 120. Each file takes TASK_SECONDS on a node; a node boots in ALLOC + BOOT seconds (the
service takes minutes). Designs:
- timer + autoscale at rest: ours (shared/scaling.py via shared/pool_scaler.scale_pool, a tick every minute);
- autoscale only: the same formula, evaluated every 5 minutes, no timer;
- fixed pool: POOL_MAX_NODES always on (the tutorial's fixed pool, never deleted).
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from shared.scaling import ScalingMemory, ScalingPolicy
from shared.pool_scaler import scale_pool
from devstack.pool_sim import SimConfig, SimControl, SimPool

ROOT = Path(__file__).resolve().parent.parent
FILES = 50
TASK_SECONDS = 60.0
MAX_NODES = 8
IDLE_BEFORE = 30 * 60
HORIZON = 120 * 60
TICK = 60.0
CONFIG = SimConfig(max_nodes=MAX_NODES, slots=1, alloc_delay=timedelta(seconds=60), boot_delay=timedelta(seconds=180),
                   task_seconds=TASK_SECONDS, interval=timedelta(minutes=5))
POLICY = ScalingPolicy(max_nodes=MAX_NODES, idle_grace=timedelta(seconds=120),
                       autoscale_handback=timedelta(seconds=300))


@dataclass
class Outcome:
    design: str
    node_seconds: float
    busy_task_seconds: float
    ratio: float
    idle_node_seconds: float
    boot_node_seconds: float   # billed while booting: unavoidable once a node is asked for
    idle_after_boot_s: float   # billed, booted, no task: what the scaling policy controls
    first_start_wait_s: float
    median_wait_s: float
    p95_wait_s: float
    makespan_s: float
    nodes_at_end: int
    pool_calls: int


def _run(design: str) -> Outcome:
    if design == "fixed pool":
        pool = SimPool(CONFIG, autoscale=False, nodes=MAX_NODES)
    else:
        pool = SimPool(CONFIG, autoscale=True, nodes=0)
    memory = ScalingMemory()
    uploads_at = [IDLE_BEFORE + i * (60.0 / FILES) for i in range(FILES)]
    next_upload = 0
    next_tick = TICK
    elapsed = 0.0
    while elapsed < HORIZON:
        step_to = min(next_tick, uploads_at[next_upload] if next_upload < FILES else HORIZON, HORIZON)
        pool.advance(step_to - elapsed)
        elapsed = step_to
        while next_upload < FILES and uploads_at[next_upload] <= elapsed:
            pool.add_task()
            next_upload += 1
        if elapsed >= next_tick:
            if design == "timer + autoscale at rest":
                outcome = scale_pool(SimControl(pool), pool.work(), memory, POLICY, clock=lambda: pool.now,
                                     sleep=pool.advance)
                memory = outcome.memory
            next_tick += TICK
    tasks = list(pool.tasks.values())
    waits = sorted((t.started_at - t.added_at).total_seconds() for t in tasks if t.started_at)
    done = [t.done_at for t in tasks if t.done_at]
    first_upload = min(t.added_at for t in tasks)
    makespan = (max(done) - first_upload).total_seconds() if len(done) == FILES else float("nan")
    busy = pool.busy_seconds
    return Outcome(design=design, node_seconds=round(pool.node_seconds), busy_task_seconds=round(busy),
                   ratio=round(pool.node_seconds / busy, 2) if busy else float("nan"),
                   idle_node_seconds=round(pool.node_seconds - busy),
                   boot_node_seconds=round(pool.nodes_created * CONFIG.boot_delay.total_seconds()),
                   idle_after_boot_s=round(pool.node_seconds - busy
                                           - pool.nodes_created * CONFIG.boot_delay.total_seconds()),
                   first_start_wait_s=round(waits[0], 1) if waits else float("nan"),
                   median_wait_s=round(statistics.median(waits), 1) if waits else float("nan"),
                   p95_wait_s=round(waits[int(0.95 * (len(waits) - 1))], 1) if waits else float("nan"),
                   makespan_s=round(makespan, 1), nodes_at_end=len(pool.nodes), pool_calls=len(pool.calls))


def run() -> dict:
    designs = ["timer + autoscale at rest", "autoscale only", "fixed pool"]
    outcomes = [_run(d) for d in designs]
    return {"files": FILES, "task_seconds": TASK_SECONDS, "max_nodes": MAX_NODES,
            "node_start_seconds": (CONFIG.alloc_delay + CONFIG.boot_delay).total_seconds(),
            "idle_before_min": IDLE_BEFORE / 60, "horizon_min": HORIZON / 60, "tick_seconds": TICK,
            "idle_grace_seconds": POLICY.idle_grace.total_seconds(),
            "outcomes": [o.__dict__ for o in outcomes]}


def main() -> None:
    result = run()
    out = ROOT / "bench" / "results" / "cost.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"{FILES} files x {TASK_SECONDS:.0f} s, max {MAX_NODES} nodes, node start "
          f"{result['node_start_seconds']:.0f} s, idle {IDLE_BEFORE // 60} min before, horizon {HORIZON // 60} min")
    cols = ["design", "node_seconds", "busy_task_seconds", "ratio", "idle_node_seconds", "boot_node_seconds",
            "idle_after_boot_s", "first_start_wait_s",
            "median_wait_s", "p95_wait_s", "makespan_s", "nodes_at_end", "pool_calls"]
    print(" | ".join(cols))
    for o in result["outcomes"]:
        print(" | ".join(str(o[c]) for c in cols))
    print(f"written: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
