"""Item 4: one reconcile tick over 10,000 completed tasks + 10 changes vs a naive list-everything reconcile.

The measurement is the timer's own benchmark (bench/bench_reconcile.py: its Azurite + emulator, the app's
Reconciler and timer tick on counting clients, and two naive reconcilers on the same job); this module
runs it and turns its figures into the report's item.
"""
from __future__ import annotations

from . import bench_reconcile
from .model import Chart, Finding, ItemResult

DEFAULT_TASKS, QUICK_TASKS, CHANGES = 10_000, 2_000, 10
MAX_BATCH_CALLS = 5          # "a handful of calls, not a full listing" (issue 5)
MAX_BYTES_SHARE = 0.01       # ours reads at most 1 % of what listing everything reads


def _find(measures: list[dict], prefix: str) -> dict:
    for m in measures:
        if m["name"].startswith(prefix):
            return m
    raise KeyError(f"bench_reconcile reported no measure starting {prefix!r}: {[m['name'] for m in measures]}")


def run(quick: bool = False) -> ItemResult:
    tasks = QUICK_TASKS if quick else DEFAULT_TASKS
    data = bench_reconcile.run(tasks, CHANGES)
    measures = data["measures"]
    reconcile = _find(measures, "ours, reconcile, fresh process")
    tick = _find(measures, "ours, whole timer tick, warm process (")
    idle = _find(measures, "ours, whole timer tick, warm process, nothing changed")
    naive = _find(measures, "naive: list every task, read whole ledger")
    upsert = _find(measures, "naive: list every task, upsert every row")
    result = ItemResult(
        key="4", title=f"reconcile cost: one tick at {tasks:,} completed tasks + {CHANGES} changes",
        baseline="a naive reconcile: list every task (no $filter/$select), read the whole ledger partition, "
                 "write the changed rows",
        target=f"a handful of Batch calls (<= {MAX_BATCH_CALLS}) and no full listing (response bytes <= "
               f"{MAX_BYTES_SHARE:.0%} of the naive reconcile's)")
    byte_share = tick["response_bytes"] / naive["response_bytes"]
    result.findings = [
        Finding("Batch requests, whole timer tick / naive", str(tick["batch_calls"]), str(naive["batch_calls"]),
                tick["batch_calls"] / naive["batch_calls"], f"<= {MAX_BATCH_CALLS}",
                tick["batch_calls"] <= MAX_BATCH_CALLS),
        Finding("response bytes, whole timer tick / naive", f"{tick['response_bytes'] / 1e3:,.1f} kB",
                f"{naive['response_bytes'] / 1e6:,.1f} MB", byte_share, f"<= {MAX_BYTES_SHARE:.0%}",
                byte_share <= MAX_BYTES_SHARE),
        Finding("wall, whole timer tick / naive", f"{tick['seconds']:.2f} s", f"{naive['seconds']:.2f} s",
                tick["seconds"] / naive["seconds"], "", None),
        Finding("Table requests (writes), whole timer tick vs naive", f"{tick['table_calls']} ({tick['table_writes']})",
                f"{naive['table_calls']} ({naive['table_writes']})", tick["table_calls"] / naive["table_calls"], "", None),
    ]
    result.columns = ["measure", "Batch requests", "Batch operations", "Table requests", "Table writes",
                      "response bytes", "wall s", "listed / written"]
    result.rows = [[m["name"], m["batch_calls"], ", ".join(f"{k} {v}" for k, v in sorted(m["batch_ops"].items())),
                    m["table_calls"], m["table_writes"], f"{m['response_bytes']:,}", f"{m['seconds']:.2f}",
                    f"{m['notes'].get('listed', '')} / {m['notes'].get('updated', m['notes'].get('written', ''))}"]
                   for m in measures]
    result.notes = [
        f"Setup: {tasks:,} tasks completed and reconciled once ({data['setup_seconds']} s), then {CHANGES} more "
        f"complete after the watermark's {data['overlap_seconds']:g} s re-list window; measured by "
        "bench/bench_reconcile.py (Batch requests at the emulator, Table requests and response bytes at a "
        "counting transport).",
        f"A tick with nothing changed: {idle['batch_calls']} Batch and {idle['table_calls']} Table requests, "
        f"{idle['table_writes']} writes. Listing everything and upserting every row costs "
        f"{upsert['table_writes']} Table transactions and {upsert['seconds']:.1f} s per tick.",
        "The naive reconcile's Table requests are few because one partition scan returns 1,000 rows per page; "
        "its cost is the bytes and the time, which grow with the job, while ours grow with the changes. The "
        "reconcile-only figure (fresh process) is "
        f"{reconcile['batch_calls']} Batch + {reconcile['table_calls']} Table requests.",
    ]
    result.chart = Chart(f"4. one tick at {tasks:,} tasks + {CHANGES} changes", "count / kB (log)",
                         ["Batch requests", "Table requests", "response kB"],
                         {"ours (tick)": [tick["batch_calls"], tick["table_calls"], tick["response_bytes"] / 1e3],
                          "naive list-all": [naive["batch_calls"], naive["table_calls"], naive["response_bytes"] / 1e3]},
                         log=True)
    result.raw = data
    return result
