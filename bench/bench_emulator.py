"""Batch emulator throughput through the real azure-batch SDK (a benchmark, not a test).

    .venv/bin/python bench/bench_emulator.py [--tasks 2000] [--threads 4] [--list-tasks 10000] [--separate-process]

Measures, against an emulator on a free port (in this process, or with --separate-process as its own
`python -m devstack.batch_emulator` process like the local stack runs it; SQLite or in-memory store):
- single task adds per second (`create_task`, one HTTP call per task - what the blob trigger does), sequential
  and from N client threads;
- collection adds per second (`create_tasks`, 100 per call);
- listing 10,000 tasks with a $filter: pages, Batch calls (counted by the emulator) and time.
Prints a markdown table. The issue's target: >= 200 task adds per second on a 2-core machine.
"""
from __future__ import annotations

import argparse
import logging
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from azure.batch import BatchClient, models as m  # noqa: E402
from azure.core.credentials import AzureNamedKeyCredential  # noqa: E402

from devstack.batch_emulator.access import ADMIN_HEADERS  # noqa: E402
from devstack.batch_emulator.config import EmulatorConfig  # noqa: E402
from devstack.batch_emulator.server import EmulatorServer  # noqa: E402


@dataclass
class Target:
    """Where the emulator under test listens (in-process server or a child process)."""

    url: str
    config: EmulatorConfig


def start_separate(config: EmulatorConfig, data_dir: Path | None) -> tuple[Target, subprocess.Popen]:
    args = [sys.executable, "-m", "devstack.batch_emulator", "--port", "0", "--log-level", "INFO",
            "--ffmpeg-on-path", "false"]
    args += ["--in-memory"] if data_dir is None else ["--data-dir", str(data_dir)]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        found = re.search(r"Batch emulator ready on (http://\S+)", line)
        if found:
            # keep draining its log so a chatty emulator never blocks on a full pipe
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return Target(found.group(1), config), proc
    proc.kill()
    raise RuntimeError("the emulator process did not report ready")


def _task(task_id: str) -> m.BatchTaskCreateOptions:
    return m.BatchTaskCreateOptions(id=task_id, command_line="/bin/sh -c 'true'")


def _client(server: Target | EmulatorServer) -> BatchClient:
    cfg = server.config
    return BatchClient(server.url, AzureNamedKeyCredential(cfg.account_name, cfg.account_key))


def _stats(server: Target | EmulatorServer) -> dict:
    return httpx.get(f"{server.url}/_emulator/stats", headers=ADMIN_HEADERS).json()


def bench_single_adds(server: Target | EmulatorServer, job: str, count: int, threads: int) -> float:
    clients = [_client(server) for _ in range(max(1, threads))]
    for c in clients:  # warm connections
        list(c.list_jobs())
    start = time.perf_counter()
    if threads <= 1:
        for i in range(count):
            clients[0].create_task(job, _task(f"s{i}"))
    else:
        def worker(n: int) -> None:
            client = clients[n]
            for i in range(n, count, threads):
                client.create_task(job, _task(f"s{i}"))
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(worker, range(threads)))
    elapsed = time.perf_counter() - start
    for c in clients:
        c.close()
    return count / elapsed


def bench_collection_adds(server: Target | EmulatorServer, job: str, count: int) -> float:
    client = _client(server)
    tasks = [_task(f"c{i}") for i in range(count)]
    start = time.perf_counter()
    client.create_tasks(job, tasks, max_concurrency=4)
    elapsed = time.perf_counter() - start
    client.close()
    return count / elapsed


def bench_listing(server: Target | EmulatorServer, job: str, total: int) -> tuple[int, int, float, int]:
    client = _client(server)
    client.create_tasks(job, [_task(f"l{i}") for i in range(total)], max_concurrency=4)
    for i in range(0, total, 10):  # 10% completed, spread over the job
        client.terminate_task(job, f"l{i}")
    httpx.post(f"{server.url}/_emulator/stats/reset", headers=ADMIN_HEADERS)
    start = time.perf_counter()
    active = sum(1 for _ in client.list_tasks(job, filter="state eq 'active'", select=["id", "state"]))
    elapsed = time.perf_counter() - start
    calls = _stats(server)["operations"].get("Task_List", 0)
    httpx.post(f"{server.url}/_emulator/stats/reset", headers=ADMIN_HEADERS)
    completed = sum(1 for _ in client.list_tasks(job, filter="state eq 'completed'"))
    client.close()
    return active, calls, elapsed, completed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000, help="tasks per add benchmark")
    parser.add_argument("--threads", type=int, default=4, help="client threads for the concurrent add run")
    parser.add_argument("--list-tasks", type=int, default=10_000, help="tasks in the listing benchmark")
    parser.add_argument("--in-memory", action="store_true", help="use the in-memory store instead of SQLite")
    parser.add_argument("--separate-process", action="store_true",
                        help="run the emulator as its own process (client and server do not share the GIL)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = None if args.in_memory else Path(tmp) / "state"
        config = EmulatorConfig(port=0, data_dir=data_dir, log_level="WARNING", ffmpeg_on_path=False)
        proc = None
        if args.separate_process:
            server, proc = start_separate(config, data_dir)
        else:
            server = EmulatorServer(config).start()
        try:
            admin = _client(server)
            for job in ("seq", "par", "coll", "list"):
                admin.create_job(m.BatchJobCreateOptions(id=job, pool_info=m.BatchPoolInfo(pool_id="none")))
            admin.close()
            seq = bench_single_adds(server, "seq", args.tasks, 1)
            par = bench_single_adds(server, "par", args.tasks, args.threads)
            coll = bench_collection_adds(server, "coll", args.tasks * 5)
            active, calls, list_s, completed = bench_listing(server, "list", args.list_tasks)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=20)
            else:
                server.stop()

    store = "memory" if args.in_memory else "sqlite (WAL)"
    where = "separate process" if args.separate_process else "same process as the client"
    print(f"\n### Batch emulator throughput (azure-batch 15.1.0 SDK, store: {store}, emulator: {where})\n")
    print("| measurement | result |")
    print("|---|---|")
    print(f"| create_task, 1 client thread | {seq:,.0f} tasks/s |")
    print(f"| create_task, {args.threads} client threads | {par:,.0f} tasks/s |")
    print(f"| create_tasks (100 per call, 4 threads) | {coll:,.0f} tasks/s |")
    print(f"| list {args.list_tasks:,} tasks, $filter state eq 'active' | {active:,} tasks in {calls} pages, "
          f"{list_s:.2f} s |")
    print(f"| list with $filter state eq 'completed' | {completed:,} tasks |")
    target = 200
    verdict = "meets" if max(seq, par) >= target else "MISSES"
    print(f"\nTarget >= {target} adds/s: {verdict} (best single-add rate {max(seq, par):,.0f}/s).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
