"""Item 3: what one upload costs the submit path, and a burst of uploads: lost nothing, duplicated nothing.

The app's trigger entry point (`function_app.process_upload`) is driven the way the host drives it:
a `BlobClient` for the blob (the SDK-type binding), from as many threads as host.json's
`extensions.blobs.maxDegreeOfParallelism`. The app's own service is built with a counting transport
(`shared.runtime.build_service(settings, {"transport": ...})`), so Batch, Table and Blob requests are
counted on the wire; the emulator's request stats cross-check the Batch count.

1. Upload N small real MP4s to Azurite (not timed as submit).
2. Cold: one invocation alone (creates pool, job, table lazily) - its requests are reported apart.
3. Burst: the other N-1 invocations plus ~10 % re-deliveries of the same blob versions (the host's
   at-least-once delivery), shuffled. Time to all-submitted = first invocation start -> last return.
4. Check: Batch task list == ledger rows == the expected (blob name, ETag) task ids; nothing extra.
Baseline: bare `create_task` calls (bench/bench_emulator.bench_single_adds: a one-line task, one
HTTP call each) with the same threads on the same emulator - the limit of the Batch endpoint here.
No pool node runs during the burst: the app's pool is created with autoscale (first evaluation: no
pending samples -> 0 nodes) and no timer runs.
"""
from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from azure.storage.blob import BlobClient
from azure.data.tables import TableClient

from shared import naming, runtime
from shared.ledger import Col
from shared.runtime import build_service
from shared.settings import Settings

from . import bench_emulator, clips
from .counting import CountingTransport
from .model import Chart, Finding, ItemResult
from .pipeline import Upload, upload_all
from .stack import LocalStack

ROOT = Path(__file__).resolve().parent.parent
REDELIVERY_SHARE = 0.10


@dataclass(frozen=True)
class Size:
    uploads: int


DEFAULT = Size(1000)
QUICK = Size(100)


def host_parallelism() -> int:
    """extensions.blobs.maxDegreeOfParallelism from host.json (the host's concurrent blob invocations)."""
    host = json.loads((ROOT / "host.json").read_text())
    return int(host.get("extensions", {}).get("blobs", {}).get("maxDegreeOfParallelism") or 8)


def _services(stack: LocalStack) -> dict[str, str]:
    return {f"127.0.0.1:{stack.emulator_port}": "batch", f"127.0.0.1:{stack.ports.blob}": "blob",
            f"127.0.0.1:{stack.ports.table}": "table", f"127.0.0.1:{stack.ports.queue}": "queue"}


def _invoke(stack: LocalStack, container: str, name: str, transport: CountingTransport) -> None:
    """What the host does per blob: bind a BlobClient (no bytes read) and call the function."""
    import function_app  # imported here: its decorator reads settings from the environment at import

    client = BlobClient.from_connection_string(stack.connection_string, container, name, transport=transport)
    function_app.process_upload(client)


def _per_upload(counts: Counter, uploads: int) -> dict[str, float]:
    return {service: n / uploads for service, n in CountingTransport.by_service(counts).items()}


def run(quick: bool = False, work_root: Path | None = None) -> ItemResult:
    size = QUICK if quick else DEFAULT
    threads = host_parallelism()
    result = ItemResult(
        key="3", title="submission cost and a burst of uploads",
        baseline=f"bare Batch create_task calls, {threads} threads, same emulator (bench/bench_emulator.py)",
        target="steady state: 1 Batch request and <= 1 Table write per upload (issue 4); burst: 0 lost, "
               "0 duplicated")
    tmp = Path(tempfile.mkdtemp(prefix="bench-submit-", dir=work_root))
    stack = LocalStack(tmp / "stack", slots=1)
    try:
        stack.start()
        values = stack.app_settings()
        settings = Settings.from_env(values)
        app_transport = CountingTransport(_services(stack))
        trigger_transport = CountingTransport(_services(stack))
        service = build_service(settings, {"transport": app_transport})
        runtime.set_service(service)

        blobs = stack.blob_service()
        blobs.create_container(settings.input_container)
        source = clips.clip(clips.ClipSpec(2, "360p", 2))
        names = [f"burst/{i:05d} clip.mp4" for i in range(size.uploads)]
        upload_started = time.perf_counter()
        uploaded = upload_all(blobs, settings.input_container, [Upload(n, source) for n in names], threads=8)
        upload_seconds = time.perf_counter() - upload_started
        expected = {naming.task_id(n, uploaded[n]["etag"]) for n in names}

        # cold: the first invocation creates pool, job and table
        stack.emulator_admin("POST", "stats/reset")
        _invoke(stack, settings.input_container, names[0], trigger_transport)
        cold = app_transport.snapshot() + trigger_transport.snapshot()
        cold_batch_ops = stack.emulator_admin("GET", "stats")["operations"]

        # burst: everything else, plus re-deliveries, shuffled
        rng = random.Random(7)
        deliveries = names[1:] + rng.sample(names, k=max(1, int(REDELIVERY_SHARE * size.uploads)))
        rng.shuffle(deliveries)
        app_before, trig_before = app_transport.snapshot(), trigger_transport.snapshot()
        stack.emulator_admin("POST", "stats/reset")
        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda n: _invoke(stack, settings.input_container, n, trigger_transport), deliveries))
        burst_seconds = time.perf_counter() - started
        burst = (app_transport.snapshot() - app_before) + (trigger_transport.snapshot() - trig_before)
        emulator_ops = stack.emulator_admin("GET", "stats")
        steady_uploads = len(names) - 1

        # verification: Batch task list vs ledger vs expected
        with stack.batch_client() as batch:
            task_ids = [t.id for job in batch.list_jobs(select=["id"]) if job.id.startswith(f"{settings.job_id}-")
                        for t in batch.list_tasks(job.id, select=["id"])]
        table = TableClient.from_connection_string(stack.connection_string, table_name=settings.ledger_table)
        rows = list(table.query_entities(f"PartitionKey eq '{settings.job_id}'", select=["RowKey", Col.STATE]))
        row_keys = [r["RowKey"] for r in rows]
        missing_tasks = expected - set(task_ids)
        extra_tasks = set(task_ids) - expected
        missing_rows = expected - set(row_keys)
        extra_rows = set(row_keys) - expected
        duplicate_tasks = len(task_ids) - len(set(task_ids))

        # baseline: bare create_task on the same emulator, same threads
        baseline_seconds = _bare_adds(stack, size.uploads, threads)

        runtime.set_service(None)
        _fill(result, size, threads, upload_seconds, cold, cold_batch_ops, burst, emulator_ops, steady_uploads,
              len(deliveries), burst_seconds, baseline_seconds, task_ids, row_keys, missing_tasks, extra_tasks,
              missing_rows, extra_rows, duplicate_tasks, Counter(r.get(Col.STATE) for r in rows))
    finally:
        runtime.set_service(None)
        stack.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def _bare_adds(stack: LocalStack, count: int, threads: int) -> float:
    """Seconds for `count` bare create_task calls (bench_emulator's measurement, pointed at our emulator)."""
    from azure.batch import models as m

    name, key = stack.batch_account
    server = SimpleNamespace(url=stack.batch_url, config=SimpleNamespace(account_name=name, account_key=key))
    job = f"bare-{int(time.time())}"
    with stack.batch_client() as admin:
        admin.create_job(m.BatchJobCreateOptions(id=job, pool_info=m.BatchPoolInfo(pool_id="no-such-pool")))
    rate = bench_emulator.bench_single_adds(server, job, count, threads)
    return count / rate


def _fill(result: ItemResult, size: Size, threads: int, upload_seconds: float, cold: Counter, cold_batch_ops: dict,
          burst: Counter, emulator_ops: dict, steady_uploads: int, deliveries: int, burst_seconds: float,
          baseline_seconds: float, task_ids: list[str], row_keys: list[str], missing_tasks: set, extra_tasks: set,
          missing_rows: set, extra_rows: set, duplicate_tasks: int, states: Counter) -> None:
    # Per invocation: a re-delivery is an invocation too (it costs its own requests: TaskExists, row exists).
    per = {s: n / deliveries for s, n in CountingTransport.by_service(burst).items()}
    emulator_batch = emulator_ops["total"] / deliveries
    table_writes = sum(n for (s, op), n in burst.items() if s == "table" and not op.startswith("GET")) / deliveries
    lost = len(missing_tasks) + len(missing_rows)
    duplicated = len(extra_tasks) + len(extra_rows) + duplicate_tasks
    ratio = burst_seconds / baseline_seconds
    result.findings = [
        Finding("Batch requests per upload (per trigger invocation), steady state; client count = emulator count",
                f"{per.get('batch', 0):.2f}", "1 (bare create_task)", per.get("batch", 0) / 1.0, "= 1",
                abs(per.get("batch", 0) - 1.0) < 1e-9 and abs(emulator_batch - per.get("batch", 0)) < 1e-9),
        Finding("Table writes per upload (per invocation), steady state", f"{table_writes:.2f}", "", None, "<= 1", table_writes <= 1.0),
        Finding("Table and Blob requests per upload (all verbs)", f"table {per.get('table', 0):.2f}, blob {per.get('blob', 0):.2f}",
                "", None, "", None),
        Finding(f"burst of {size.uploads} uploads (+{deliveries - steady_uploads} re-deliveries): time to all-submitted",
                f"{burst_seconds:.1f} s ({steady_uploads / burst_seconds:.0f} uploads/s)",
                f"{baseline_seconds:.1f} s ({size.uploads / baseline_seconds:.0f} adds/s)", ratio, "", None),
        Finding("burst: lost / duplicated (Batch task list vs ledger vs expected)", f"{lost} / {duplicated}",
                "", None, "0 / 0", lost == 0 and duplicated == 0),
    ]
    result.columns = ["phase", "service", "operation", "requests", "per invocation"]
    result.rows = [["cold (first upload)", s, op, n, ""] for (s, op), n in sorted(cold.items())]
    result.rows += [["steady (burst)", s, op, n, f"{n / deliveries:.3f}"] for (s, op), n in sorted(burst.items())]
    result.notes = [
        f"{threads} concurrent invocations (host.json extensions.blobs.maxDegreeOfParallelism), as the host runs "
        f"them; {size.uploads} uploads of a 2 s MP4 took {upload_seconds:.1f} s to upload first (8 streams).",
        f"Emulator request stats for the burst: {json.dumps(emulator_ops['operations'])}; cold invocation: "
        f"{json.dumps(cold_batch_ops)}.",
        f"Verification: {len(task_ids)} Batch tasks, {len(row_keys)} ledger rows ({dict(states)}); missing tasks "
        f"{len(missing_tasks)}, extra tasks {len(extra_tasks)}, missing rows {len(missing_rows)}, extra rows "
        f"{len(extra_rows)}. Re-deliveries of a blob version found TaskExists and an existing row (no write).",
        f"Per upload the submit path makes 3 round trips (Blob get properties, Batch add task, Table insert) "
        f"against the baseline's 1, so its time is {ratio:.1f}x the bare-add time; no target is set on it.",
    ]
    cold_by = CountingTransport.by_service(cold)
    result.chart = Chart("3. requests per upload: first (cold) and steady state", "requests",
                         ["batch", "table", "blob"],
                         {"cold (first upload)": [cold_by.get(s, 0) for s in ("batch", "table", "blob")],
                          "steady (burst)": [per.get(s, 0) for s in ("batch", "table", "blob")],
                          "target (max)": [1, 1, 1]})
    result.raw = {"per_upload": per, "emulator_batch_per_upload": emulator_batch, "burst_seconds": burst_seconds,
                  "baseline_seconds": baseline_seconds, "lost": lost, "duplicated": duplicated,
                  "cold": {f"{s} {op}": n for (s, op), n in cold.items()}}
