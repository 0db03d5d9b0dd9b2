"""Item 7, "day at scale": the same compressed day of uploads at 1,000 / 10,000 / 100,000 uploads, per size.

    ./dev bench --only scale [--sizes 1000,10000]      (or .venv/bin/python -m bench.scale --sizes 1000)

For each size N, on a private stack (Azurite in memory, the Batch emulator in scale mode: tasks are timed,
not run - devstack/batch_emulator/README.md "Scale mode"):
1. history: the input container is pre-filled with N MP4s converted on earlier days, each with its final
   `succeeded` ledger row (written through shared.ledger) - the container and ledger a long-running service
   has, so a tick's cost that grows with history shows;
2. the day (bench/scale_day.py, its own process = the function process): bursts and idle gaps of N uploads,
   the real trigger handler per upload, the real timer tick every TICK_SECONDS (standing for the 1-minute
   schedule), the time settings compressed by the same factor (TIME_SETTINGS); then drain and a tail of idle
   ticks;
3. verification, read through shared.ledger: every upload of the day ends in exactly one final row (lost:
   none; duplicated: an upload with more than one row, or a row for no upload; history untouched);
   Batch: the task count of the app's job(s) at the end.
Per size it reports Batch calls, Table operations and List Blobs calls per upload (trigger + timer, all on
the wire), the ticks' p50/p95 wall, the largest tick's calls, the function process's peak RSS, the job
task count at the end, lost and duplicated. Writes <out>/scale.json (merged with sizes measured before) and
<out>/scale.png. Targets (issue 13): per-upload calls and p95 tick wall at the largest size within 1.2x of
the smallest; job tasks at the end bounded by the retention window, not the day's volume; 0 lost, 0 duplicated.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from azure.storage.blob import ContentSettings

from .model import Chart, Finding, ItemResult
from .stack import LocalStack
from .stats import percentile

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEFAULT_SIZES = (1_000, 10_000, 100_000)
QUICK_SIZES = (100, 300)
QUICK_TAIL_SECONDS = 60.0
KEYS = ("uploads", "batch_calls_per_upload", "table_ops_per_upload", "list_calls_per_upload", "tick_p95_s",
        "max_tick_calls", "peak_rss_mb", "job_tasks_at_end", "lost", "duplicated")

TICK_SECONDS = 1.0   # one timer tick of real time stands for the app's 1-minute schedule: 60x compression
# The app's time settings, compressed 60x (the setting's own lower bound where it has one, noted).
TIME_SETTINGS = {
    "IDLE_GRACE_SECONDS": "2",                   # 120 s
    "AUTOSCALE_HANDBACK_SECONDS": "5",           # 300 s
    "RECONCILE_OVERLAP_SECONDS": "2",            # 120 s
    "SWEEP_INTERVAL_SECONDS": "60",              # 600 s -> 10 s, but the setting's minimum is 60
    "SWEEP_MIN_AGE_SECONDS": "5",                # 300 s
    "COMPLETED_TASK_RETENTION_SECONDS": "60",    # 3600 s
    "STATUS_HEARTBEAT_SECONDS": "5",             # 300 s
    "JOB_PERIOD_SECONDS": "60",                  # 3600 s (where the app rotates its job per period)
}
# Capacity so the simulated nodes keep up with the trigger: 16 nodes x 8 slots (the emulator's node cap).
POOL_SETTINGS = {"POOL_MAX_NODES": "16", "POOL_TASK_SLOTS_PER_NODE": "8"}
# The emulator in scale mode: a task "runs" 0.5 s median (30 s of the compressed day), no outputs written.
EMULATOR_SETTINGS = {"BATCH_EMULATOR_TASK_EXECUTION": "simulate",
                     "BATCH_EMULATOR_SIMULATED_DURATION": "lognormal:0.5:0.5",
                     "BATCH_EMULATOR_SIMULATED_OUTPUTS": "none",
                     "BATCH_EMULATOR_SIMULATED_SEED": "13"}
# The day: bursts (share of the uploads over so many ticks) and idle gaps, in ticks.
PHASES: list[list[Any]] = [["idle", 3], ["burst", 10, 0.30], ["idle", 12], ["burst", 4, 0.15], ["idle", 8],
                           ["burst", 20, 0.40], ["idle", 10], ["burst", 3, 0.15], ["idle", 5]]


@dataclass
class ScaleStack(LocalStack):
    """LocalStack with the emulator in scale mode (its settings by environment, like the key)."""

    emulator_settings: dict[str, str] = field(default_factory=lambda: dict(EMULATOR_SETTINGS))

    def _spawn(self, name, argv, env=None):  # type: ignore[override]
        if name == "batch-emulator":
            env = {**(env or {}), **self.emulator_settings}
        return super()._spawn(name, argv, env)


@dataclass(frozen=True)
class Options:
    tick_seconds: float = TICK_SECONDS
    tail_seconds: float = 150.0        # idle ticks after the drain: two sweep intervals past the retention
    drain_timeout_seconds: float | None = None
    phases: tuple = tuple(tuple(p) for p in PHASES)
    outputs: str = "none"


def _services(stack: LocalStack) -> dict[str, str]:
    return {f"127.0.0.1:{stack.emulator_port}": "batch", f"127.0.0.1:{stack.ports.blob}": "blob",
            f"127.0.0.1:{stack.ports.table}": "table", f"127.0.0.1:{stack.ports.queue}": "queue"}


def _prefill(values: dict[str, str], size: int) -> float:
    """N earlier days' uploads: blobs in the input container and their final rows, through the app's ledger."""
    from shared import naming
    from shared.ledger import LedgerRow, RowWrite, State
    from shared.ledger.schema import MAX_ROWS_PER_COMMIT
    from shared.runtime import build_service
    from shared.settings import Settings

    started = time.perf_counter()
    # Events off for the history: its rows were published on their own day, so they carry no outbox marker
    # (with the app's events on, a final row written through the ledger brings one, and the day would publish
    # every earlier day's completions again).
    settings = Settings.from_env({**values, "EVENTS_SINK": "none"})
    service = build_service(settings)
    container = service.clients.blob_service.get_container_client(settings.input_container)
    container.create_container()
    names = [f"history/{i:06d}.mp4" for i in range(size)]
    payload = b"\x00\x00\x00\x18ftypmp42" + bytes(1000)
    converted = datetime.now(timezone.utc) - timedelta(days=1)

    def put(name: str) -> tuple[str, str]:
        done = container.get_blob_client(name).upload_blob(payload, overwrite=True,
                                                           content_settings=ContentSettings(content_type="video/mp4"))
        return name, done["etag"]

    with ThreadPoolExecutor(8) as pool:
        etags = list(pool.map(put, names))

    def row(name: str, etag: str) -> RowWrite:
        key = naming.task_id(name, etag)
        entity = LedgerRow(job_id=settings.job_id, row_key=key, state=State.SUCCEEDED,
                           input_container=settings.input_container, input_name=name, input_etag=etag,
                           input_size=len(payload), input_content_type="video/mp4",
                           output_name=naming.output_name(name), task_id=key, recorded_at=converted).to_entity()
        return RowWrite("upsert", entity)

    chunks = [etags[i:i + MAX_ROWS_PER_COMMIT] for i in range(0, len(etags), MAX_ROWS_PER_COMMIT)]
    service.ledger.commit([row(*chunks[0][0])])  # creates the table once
    with ThreadPoolExecutor(8) as pool:
        problems = [p for p in pool.map(lambda c: service.ledger.commit([row(n, e) for n, e in c]), chunks) if p]
    if problems:
        raise RuntimeError(f"history rows not written: {problems[:3]}")
    return time.perf_counter() - started


def _verify(values: dict[str, str], uploaded: dict[str, str], history: int) -> dict[str, Any]:
    """Every upload ends in exactly one final row (read through shared.ledger); history untouched."""
    from shared import naming
    from shared.ledger import FINAL_STATES, Col
    from shared.runtime import build_service
    from shared.settings import Settings

    settings = Settings.from_env(values)
    ledger = build_service(settings).ledger
    rows_by_name: dict[str, list[tuple[str, str]]] = {}
    for row in ledger.rows("PartitionKey eq @pk", {"pk": settings.job_id},
                           select=["PartitionKey", "RowKey", Col.STATE, Col.INPUT_NAME, Col.INPUT_ETAG]):
        if row.row_key.startswith("~"):
            continue  # the partition's own markers, not a file's row
        rows_by_name.setdefault(row.input_name, []).append((row.row_key, str(getattr(row.state, "value", row.state))))
    lost = duplicated = history_changed = 0
    states: dict[str, int] = {}
    for name, etag in uploaded.items():
        rows = rows_by_name.pop(name, [])
        expected = naming.task_id(name, etag)
        final = [k for k, state in rows if k == expected and state in FINAL_STATES]
        for _, state in rows:
            states[state] = states.get(state, 0) + 1
        if not final:
            lost += 1
        duplicated += max(0, len(rows) - 1)
    for name, rows in rows_by_name.items():
        if name.startswith("history/"):
            history_changed += len(rows) != 1 or rows[0][1] != "succeeded"
        else:
            duplicated += len(rows)  # a row for no upload of the day
    history_rows = sum(1 for n in rows_by_name if n.startswith("history/"))
    history_changed += history - history_rows
    return {"lost": lost, "duplicated": duplicated, "history_changed": history_changed, "states": states}


def _job_tasks(stack: LocalStack, job_prefix: str) -> dict[str, int]:
    with stack.batch_client() as client:
        out = {}
        for job in client.list_jobs(filter=f"startswith(id, '{job_prefix}')", select=["id", "state"]):
            c = client.get_job_task_counts(job.id).task_counts
            out[job.id] = c.active + c.running + c.completed
        return out


def _percentile(values: list[float], pct: float) -> float:
    return percentile(values, pct) if values else 0.0


def run_size(size: int, options: Options, work: Path) -> dict[str, Any]:
    """One size on a fresh stack; the figures for scale.json plus details."""
    work.mkdir(parents=True, exist_ok=True)
    emulator = {**EMULATOR_SETTINGS, "BATCH_EMULATOR_SIMULATED_OUTPUTS": options.outputs}
    stack = ScaleStack(work / "stack", slots=2, emulator_settings=emulator)
    try:
        stack.start()
        values = stack.app_settings(**TIME_SETTINGS, **POOL_SETTINGS)
        prefill_s = _prefill(values, size)
        stack.emulator_admin("POST", "stats/reset")
        drain_timeout = options.drain_timeout_seconds or max(180.0, size / 50)
        config = {"uploads": size, "values": values, "services": _services(stack), "tick_seconds": options.tick_seconds,
                  "phases": [list(p) for p in options.phases], "tail_seconds": options.tail_seconds,
                  "drain_timeout_seconds": drain_timeout}
        config_path = work / "day.json"
        config_path.write_text(json.dumps(config))
        os.chmod(config_path, 0o600)  # holds the (well-known, local) storage and emulator keys
        result_path = work / "day-result.json"
        started = time.perf_counter()
        log_path = work / "day.log"
        with open(log_path, "wb") as log:
            child = subprocess.run([sys.executable, "-m", "bench.scale_day", str(config_path), str(result_path)],
                                   cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        if child.returncode != 0:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the day at {size} failed ({child.returncode}):\n{tail}")
        day = json.loads(result_path.read_text())
        day_wall = time.perf_counter() - started
        uploaded = dict(day.pop("uploaded"))
        checked = _verify(values, uploaded, size)
        jobs = _job_tasks(stack, values["BATCH_JOB_ID"])
        emulator_ops = stack.emulator_admin("GET", "stats")
    finally:
        stack.close()
    ticks = day["ticks"]
    walls = [t["wall"] for t in ticks]
    tick_calls = [t["calls"]["batch"] + t["calls"]["table"] + t["calls"]["blob"] + t["calls"]["other"] for t in ticks]
    both = {k: day["trigger_by_kind"][k] + day["timer_by_kind"][k] for k in day["trigger_by_kind"]}
    largest = max(range(len(ticks)), key=lambda i: tick_calls[i]) if ticks else None
    return {
        "uploads": size,
        "batch_calls_per_upload": round(both["batch"] / size, 3),
        "table_ops_per_upload": round(both["table"] / size, 3),
        "list_calls_per_upload": round(both["list"] / size, 4),
        "tick_p95_s": round(_percentile(walls, 95), 3),
        "max_tick_calls": max(tick_calls, default=0),
        "peak_rss_mb": day["peak_rss_mb"],
        "job_tasks_at_end": sum(jobs.values()),
        "lost": checked["lost"],
        "duplicated": checked["duplicated"],
        # details
        "tick_p50_s": round(_percentile(walls, 50), 3),
        "tick_max_s": round(max(walls, default=0.0), 3),
        "ticks": len(ticks),
        "ticks_failed": sum(1 for t in ticks if t["errors"]),
        "tick_errors_sample": sorted({e for t in ticks for e in t["errors"]})[:5],
        "largest_tick": ticks[largest] if largest is not None else None,
        "trigger_per_upload": {k: round(v / size, 3) for k, v in day["trigger_by_kind"].items()},
        "timer_per_upload": {k: round(v / size, 3) for k, v in day["timer_by_kind"].items()},
        "timer_operations": day["timer"], "trigger_operations": day["trigger"],
        "timer_per_upload_by_module": {k: round(v / size, 3) for k, v in day.get("timer_by_module", {}).items()},
        "ledger_read_rows_keys_per_upload": {k: round(v / size, 3)
                                             for k, v in day.get("read_rows_keys_by_caller", {}).items()},
        "deliveries": day["deliveries"], "trigger_errors": day["trigger_errors"],
        "history_blobs": size, "history_changed": checked["history_changed"], "row_states": checked["states"],
        "jobs_at_end": jobs, "emulator_task_adds": emulator_ops["operations"].get("Task_Add", {}),
        "bursts": day["bursts"], "day_seconds": day["day_seconds"], "drained": day["drained"],
        "drain_seconds": day["drain_seconds"], "tail_seconds": day["tail_seconds"],
        "prefill_seconds": round(prefill_s, 1), "wall_seconds": round(day_wall, 1),
        "tick_seconds": options.tick_seconds, "time_settings": TIME_SETTINGS, "pool_settings": POOL_SETTINGS,
        "emulator_settings": emulator,
    }


def chart(figures: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(figures, key=int)
    labels = [f"{int(s):,}" for s in sizes]
    fig, (calls, ticks) = plt.subplots(1, 2, figsize=(11, 3.8))
    width = 0.27
    for i, (key, name) in enumerate((("batch_calls_per_upload", "Batch calls"), ("table_ops_per_upload", "Table ops"),
                                     ("list_calls_per_upload", "List Blobs calls"))):
        bars = calls.bar([x + (i - 1) * width for x in range(len(sizes))], [figures[s][key] for s in sizes], width,
                         label=name)
        calls.bar_label(bars, fmt="%.3g", fontsize=7)
    calls.set_xticks(range(len(sizes)), labels)
    calls.set_xlabel("uploads in the day")
    calls.set_ylabel("per upload (trigger + timer)")
    calls.set_title("calls per upload", fontsize=10)
    calls.legend(fontsize=8)
    for i, (key, name) in enumerate((("tick_p50_s", "p50"), ("tick_p95_s", "p95"))):
        ticks.bar([x + (i - 0.5) * 0.38 for x in range(len(sizes))], [figures[s].get(key, 0) for s in sizes], 0.38,
                  label=f"tick wall {name}")
    ticks.set_xticks(range(len(sizes)), labels)
    ticks.set_xlabel("uploads in the day")
    ticks.set_ylabel("seconds")
    ticks.set_title("timer tick wall", fontsize=10)
    for x, s in enumerate(sizes):
        ticks.annotate(f"max {figures[s]['max_tick_calls']} calls\n{figures[s]['job_tasks_at_end']} tasks at end",
                       (x, figures[s]["tick_p95_s"]), ha="center", va="bottom", fontsize=7)
    ticks.legend(fontsize=8)
    fig.suptitle("day at scale: history = day's uploads, local stack, Batch emulator in scale mode", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(figures: dict[str, dict[str, Any]], out_dir: Path) -> dict[str, dict[str, Any]]:
    """Merge into <out>/scale.json (sizes measured earlier stay) and redraw <out>/scale.png."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "scale.json"
    merged: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.exists() else {}
    merged.update(figures)
    merged = dict(sorted(merged.items(), key=lambda kv: int(kv[0])))
    path.write_text(json.dumps(merged, indent=1, default=str) + "\n")
    chart(merged, out_dir / "scale.png")
    return merged


def run(sizes: tuple[int, ...] = DEFAULT_SIZES, out_dir: Path = RESULTS, options: Options = Options(),
        work_root: Path | None = None) -> ItemResult:
    result = ItemResult(
        key="7", title="day at scale",
        baseline=f"the same day at the smallest size ({min(sizes):,} uploads), same run",
        target="per-upload calls and p95 tick wall at the largest size <= 1.2x the smallest; job tasks at the end "
               "bounded by the retention window; 0 lost, 0 duplicated")
    figures: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-", dir=work_root) as tmp:
        for size in sorted(sizes):
            print(f"  day at scale: {size:,} uploads ...", flush=True)
            started = time.perf_counter()
            figures[str(size)] = run_size(size, options, Path(tmp) / str(size))
            f = figures[str(size)]
            print(f"  {size:,}: batch {f['batch_calls_per_upload']}, table {f['table_ops_per_upload']}, list "
                  f"{f['list_calls_per_upload']} per upload; tick p95 {f['tick_p95_s']} s; max tick calls "
                  f"{f['max_tick_calls']}; rss {f['peak_rss_mb']} MB; tasks at end {f['job_tasks_at_end']}; lost "
                  f"{f['lost']}, duplicated {f['duplicated']} ({time.perf_counter() - started:.0f} s)", flush=True)
            write({str(size): f}, out_dir)  # each size as soon as it is measured: a later failure keeps it
    _fill(result, figures)
    return result


def _fill(result: ItemResult, figures: dict[str, dict[str, Any]]) -> None:
    sizes = sorted(figures, key=int)
    small, large = figures[sizes[0]], figures[sizes[-1]]
    result.columns = ["uploads", *KEYS[1:], "tick_p50_s", "ticks", "ticks_failed"]
    result.rows = [[f"{int(s):,}", *[figures[s][k] for k in KEYS[1:]], figures[s]["tick_p50_s"], figures[s]["ticks"],
                    figures[s]["ticks_failed"]] for s in sizes]

    def ratio(key: str) -> float | None:
        return large[key] / small[key] if small[key] else None

    for key, name in (("batch_calls_per_upload", "Batch calls per upload"), ("table_ops_per_upload",
                      "Table operations per upload"), ("list_calls_per_upload", "List Blobs calls per upload"),
                      ("tick_p95_s", "p95 tick wall (s)")):
        r = ratio(key)
        result.findings.append(Finding(f"{name}, {int(sizes[-1]):,} vs {int(sizes[0]):,} uploads", str(large[key]),
                                       str(small[key]), r, "<= 1.2x",
                                       None if r is None or len(sizes) < 2 else r <= 1.2))
    # Bounded by the retention window, not the day's volume: the count at the end must not grow with the size.
    end_ratio = ratio("job_tasks_at_end")
    result.findings.append(Finding(f"Batch job tasks at the end, {int(sizes[-1]):,} vs {int(sizes[0]):,} uploads",
                                   str(large["job_tasks_at_end"]), str(small["job_tasks_at_end"]), end_ratio,
                                   "<= 1.2x (or <= 100 tasks)", None if len(sizes) < 2 else
                                   large["job_tasks_at_end"] <= max(100, 1.2 * small["job_tasks_at_end"])))
    lost = sum(figures[s]["lost"] for s in sizes)
    duplicated = sum(figures[s]["duplicated"] for s in sizes)
    result.findings.append(Finding("lost / duplicated uploads, all sizes", f"{lost} / {duplicated}", "", None,
                                   "0 / 0", lost == 0 and duplicated == 0))
    result.notes = [
        f"Each size: the input container pre-filled with as many earlier uploads (final rows in the ledger), then a "
        f"compressed day ({len(PHASES)} phases: bursts and idle gaps), drain, and {Options().tail_seconds:.0f} s of "
        f"idle ticks; one tick every {TICK_SECONDS:g} s real stands for the 1-minute timer; time settings "
        f"compressed 60x ({', '.join(f'{k}={v}' for k, v in TIME_SETTINGS.items())}).",
        "Calls are counted on the wire (bench/counting.py) for the trigger's and the timer's services; the tasks run "
        "in the Batch emulator's scale mode (no process per task).",
    ]
    result.chart = Chart("7. day at scale: calls per upload", "per upload", [f"{int(s):,}" for s in sizes],
                         {"Batch": [figures[s]["batch_calls_per_upload"] for s in sizes],
                          "Table": [figures[s]["table_ops_per_upload"] for s in sizes],
                          "List Blobs": [figures[s]["list_calls_per_upload"] for s in sizes]})
    result.raw = figures


def parse_sizes(text: str) -> tuple[int, ...]:
    sizes = tuple(int(x.replace("_", "").replace(",", "")) for x in text.split(",") if x.strip())
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: give positive upload counts, e.g. 1000,10000")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=parse_sizes, default=DEFAULT_SIZES, help="upload counts, e.g. 1000,10000")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where scale.json and scale.png go")
    parser.add_argument("--tail-seconds", type=float, default=Options().tail_seconds)
    args = parser.parse_args(argv)
    result = run(args.sizes, args.out, Options(tail_seconds=args.tail_seconds))
    for f in result.findings:
        print(f"{f.measure}: {f.ours} (baseline {f.baseline or '-'}) target {f.target}: "
              f"{'n/a' if f.met is None else 'met' if f.met else 'MISSED'}")
    return 0 if result.targets_met is not False else 1


if __name__ == "__main__":
    sys.exit(main())
