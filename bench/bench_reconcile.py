"""Calls of one reconcile tick over a job with 10,000 completed tasks and 10 new changes, vs a naive reconciler.

Run: `.venv/bin/python -m bench.bench_reconcile [--tasks 10000] [--changes 10]` (starts its own Azurite on
free ports and an in-memory Batch emulator; takes about a minute). Writes bench/results/reconcile.json.

Setup: a fixed pool, a standing job with N tasks (`/bin/sh -c true`, added 100 per addtaskcollection call)
whose ledger rows exist (inserted in transactions as the blob trigger would), all completed and reconciled
once; then the reconcile overlap window passes and M more tasks are added and complete.
Measured (Batch calls at the emulator's /_emulator/stats, Table calls at a counting HTTP transport):
- `ours, fresh process`: `Reconciler.run()` in a new process state (no row cache);
- `ours, warm process`: the same tick in a process that reconciled before (its row cache in use);
- `ours, whole timer tick`: reconcile + task counts + pool/nodes + status row;
- `naive, list and diff`: list every task (no $filter/$select), read the whole ledger partition, write
  the changed rows in transactions;
- `naive, list and upsert all`: list every task, upsert every row in transactions (no reads).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from azure.batch import BatchClient
from azure.batch import models as batch_models
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableClient, UpdateMode

from devstack import azurite
from devstack.batch_emulator.access import ADMIN_HEADERS
from devstack.batch_emulator.config import EmulatorConfig
from devstack.batch_emulator.server import EmulatorServer
from shared import pool_spec
from shared.job_periods import JobPeriods
from shared.ledger import Col, LedgerRow, State
from shared.reconcile import Reconciler, ledger_state
from shared.runtime import build_service
from shared.settings import Settings
from shared.runtime import build_timer_service
from shared.settings import TimerSettings

ROOT = Path(__file__).resolve().parent.parent
OVERLAP = timedelta(seconds=5)


class CountingTransport(RequestsTransport):
    """Counts requests and response bytes per host."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str, str, int]] = []

    def send(self, request, **kwargs):
        response = super().send(request, **kwargs)
        size = int(response.headers.get("content-length") or 0)
        self.calls.append((urlsplit(request.url).netloc, request.method, urlsplit(request.url).path, size))
        return response

    def mark(self) -> int:
        return len(self.calls)


@dataclass
class Measure:
    name: str
    batch_calls: int
    batch_ops: dict[str, int]
    table_calls: int
    table_writes: int
    response_bytes: int
    seconds: float
    notes: dict = field(default_factory=dict)


def _settings(conn: str, emu: EmulatorServer) -> Settings:
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    return Settings.from_env({**sample, "MEDIA_STORAGE": conn, "BATCH_ACCOUNT_URL": emu.url,
                              "BATCH_ACCOUNT_NAME": emu.config.account_name,
                              "BATCH_ACCOUNT_KEY": emu.config.account_key, "LEDGER_TABLE": "benchledger",
                              "BATCH_POOL_ID": "bench-pool", "BATCH_JOB_ID": "bench-job",
                              "POOL_TASK_SLOTS_PER_NODE": "8"})


def _job(settings: Settings) -> str:
    """The current period's job (shared/job_periods.py): where the app's tasks of this hour go."""
    now = _now()
    return JobPeriods(settings.job_id, settings.job_period).job_for(now, now)


def _add_tasks(batch: BatchClient, table: TableClient, settings: Settings, start: int, count: int) -> list[str]:
    ids = [f"bench-{i:06d}" for i in range(start, start + count)]
    tasks = [batch_models.BatchTaskCreateOptions(id=i, display_name=f"bench/{i}.mp4", command_line="/bin/sh -c true")
             for i in ids]
    batch.create_tasks(_job(settings), tasks)
    rows = [LedgerRow(job_id=settings.job_id, batch_job_id=_job(settings), row_key=i, state=State.QUEUED, input_container="input",
                      input_name=f"bench/{i}.mp4", input_etag="0x1", input_size=1, input_content_type=None,
                      output_name=f"bench/{i}.mp3", task_id=i, recorded_at=_now()).to_entity() for i in ids]
    for k in range(0, len(rows), 100):
        table.submit_transaction([("create", r) for r in rows[k:k + 100]])
    return ids


def _now():
    from datetime import datetime, timezone
    return datetime.now(timezone.utc)


def _wait_completed(batch: BatchClient, job_id: str, total: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while True:
        counts = batch.get_job_task_counts(job_id).task_counts
        if counts.completed >= total:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {counts.completed}/{total} tasks completed")
        time.sleep(0.5)


def _measure(name: str, emu_stats, transport: CountingTransport, table_host: str, fn) -> Measure:
    before = emu_stats()["operations"]
    mark = transport.mark()
    started = time.perf_counter()
    notes = fn() or {}
    seconds = time.perf_counter() - started
    after = emu_stats()["operations"]
    ops = {op: after.get(op, 0) - before.get(op, 0) for op in after if after.get(op, 0) != before.get(op, 0)}
    calls = transport.calls[mark:]
    table = [c for c in calls if c[0] == table_host]
    return Measure(name, sum(ops.values()), ops, len(table), sum(1 for c in table if c[1] != "GET"),
                   sum(c[3] for c in calls), round(seconds, 3), notes)


def run(tasks: int = 10_000, changes: int = 10) -> dict:
    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        ports = azurite.free_ports()
        proc = azurite.start(ports, log_path=Path(tmp) / "azurite.log")
        emu = EmulatorServer(EmulatorConfig(port=0, data_dir=None, node_start_delay=0.0, scheduler_tick=0.02,
                                            storage_connection_string=ports.connection_string,
                                            max_running_tasks=16, log_level="WARNING")).start()
        try:
            stats = lambda: httpx.get(f"{emu.url}/_emulator/stats", headers=ADMIN_HEADERS,  # noqa: E731
                                      timeout=10).json()
            settings = _settings(ports.connection_string, emu)
            transport = CountingTransport()
            service = build_service(settings, {"transport": transport})
            table = service.clients.ledger_table
            table_host = urlsplit(table.url).netloc
            table.create_table()
            admin = BatchClient(emu.url, AzureNamedKeyCredential(emu.config.account_name, emu.config.account_key))
            spec = pool_spec.build_pool(settings)
            admin.create_pool(batch_models.BatchPoolCreateOptions(
                id=spec.id, vm_size=spec.vm_size, virtual_machine_configuration=spec.virtual_machine_configuration,
                task_slots_per_node=8, target_dedicated_nodes=4))
            job_id = _job(settings)
            admin.create_job(pool_spec.build_job(settings, job_id))

            t0 = time.perf_counter()
            _add_tasks(admin, table, settings, 0, tasks)
            _wait_completed(admin, job_id, tasks)
            setup_seconds = time.perf_counter() - t0

            timer_settings = TimerSettings(
                idle_grace=timedelta(hours=1), autoscale_handback=timedelta(hours=1), reconcile_overlap=OVERLAP,
                sweep_interval=timedelta(days=1), sweep_min_age=timedelta(0),
                completed_task_retention=timedelta(days=1), status_heartbeat=timedelta(hours=1),
                sweep_page_size=5000, sweep_pages_per_tick=2, tick_budget=timedelta(seconds=120), reconcile_budget=timedelta(seconds=30))
            service.clients.blob_service.create_container(settings.input_container)
            timer = build_timer_service(service, timer_settings)
            measures = [_measure("ours, first run (no watermark: catch-up over the whole job)", stats, transport,
                                 table_host, lambda: _summary(timer.reconciler.run([job_id])))]
            timer.tick()  # status row + first maintenance (sweep, cleanup), so later ticks are steady-state
            # One later change moves the watermark past the bulk's re-list window (as time does in a live job).
            time.sleep(OVERLAP.total_seconds() + 1)
            done = tasks
            done += len(_add_tasks(admin, table, settings, done, 1))
            _wait_completed(admin, job_id, done)
            timer.reconciler.run([job_id])

            def next_changes() -> None:
                nonlocal done
                time.sleep(OVERLAP.total_seconds() + 1)  # the previous batch leaves the re-list window
                done += len(_add_tasks(admin, table, settings, done, changes))
                _wait_completed(admin, job_id, done)

            next_changes()
            fresh = build_timer_service(service, timer_settings)
            measures.append(_measure(f"ours, reconcile, fresh process ({changes} changes)", stats, transport,
                                     table_host, lambda: _summary(fresh.reconciler.run([job_id]))))
            next_changes()
            fresh_tick = build_timer_service(service, timer_settings)
            measures.append(_measure(f"ours, whole timer tick, fresh process ({changes} changes)", stats,
                                     transport, table_host, lambda: _tick_summary(fresh_tick.tick())))
            next_changes()
            measures.append(_measure(f"ours, whole timer tick, warm process ({changes} changes)", stats,
                                     transport, table_host, lambda: _tick_summary(fresh_tick.tick())))
            measures.append(_measure("ours, whole timer tick, warm process, nothing changed", stats,
                                     transport, table_host, lambda: _tick_summary(fresh_tick.tick())))
            next_changes()
            measures.append(_measure(f"naive: list every task, read whole ledger, write changed ({changes})",
                                     stats, transport, table_host,
                                     lambda: _naive(service, settings, upsert_all=False)))
            next_changes()
            measures.append(_measure(f"naive: list every task, upsert every row ({changes} changes)", stats,
                                     transport, table_host, lambda: _naive(service, settings, upsert_all=True)))
            result = {"tasks": tasks, "changes": changes, "overlap_seconds": OVERLAP.total_seconds(),
                      "setup_seconds": round(setup_seconds, 1), "measures": [m.__dict__ for m in measures]}
            admin.close()
            service.clients.batch.close()
            return result
        finally:
            emu.stop()
            azurite.stop(proc)


def _summary(result) -> dict:
    return {"listed": result.listed, "updated": result.updated, "adopted": result.adopted,
            "unchanged": result.unchanged, "transactions": result.transactions}


def _tick_summary(report) -> dict:
    rec = report.reconcile
    return {"listed": rec.listed, "updated": rec.updated, "transactions": rec.transactions,
            "status_written": report.status_written, "maintenance": report.sweep is not None,
            "errors": report.errors}


def _naive(service, settings: Settings, *, upsert_all: bool) -> dict:
    """What a reconciler without a watermark does every minute."""
    batch, table = service.clients.batch, service.clients.ledger_table
    tasks = list(batch.list_tasks(_job(settings)))
    rows = {} if upsert_all else {e["RowKey"]: e for e in table.query_entities(
        "PartitionKey eq @pk", parameters={"pk": settings.job_id})}
    ops = []
    for task in tasks:
        state = ledger_state(_snapshot(task)).value
        if upsert_all or rows.get(task.id, {}).get(Col.STATE) != state:
            ops.append(("upsert", {"PartitionKey": settings.job_id, "RowKey": task.id, Col.STATE: state},
                        {"mode": UpdateMode.MERGE}))
    for k in range(0, len(ops), 100):
        table.submit_transaction(ops[k:k + 100])
    return {"listed": len(tasks), "written": len(ops)}


def _snapshot(task):
    from shared.batch_types import task_snapshot as snapshot
    return snapshot(task)


def _print(result: dict) -> None:
    print(f"job: {result['tasks']} completed tasks + {result['changes']} changes "
          f"(setup {result['setup_seconds']} s, overlap {result['overlap_seconds']} s)")
    print(f"{'measure':<72} {'batch':>6} {'table':>6} {'writes':>6} {'bytes':>10} {'s':>7}")
    for m in result["measures"]:
        print(f"{m['name']:<72} {m['batch_calls']:>6} {m['table_calls']:>6} {m['table_writes']:>6} "
              f"{m['response_bytes']:>10} {m['seconds']:>7}")
        print(f"    batch ops {m['batch_ops']}  {m['notes']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=10)
    args = parser.parse_args()
    result = run(args.tasks, args.changes)
    out = ROOT / "bench" / "results" / "reconcile.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    _print(result)
    print(f"written: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
