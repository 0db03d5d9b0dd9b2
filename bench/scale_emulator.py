"""The Batch emulator's own request costs with a large job (a profile, not a pass/fail benchmark).

    .venv/bin/python -m bench.scale_emulator [--tasks 100000] [--in-memory] [--simulate]

Starts an emulator in this process (SQLite store in a temporary directory, as `./dev start` keeps it, or
--in-memory), fills one job with N app-shaped tasks (resource file, three output files, ~1.5 kB each, 100 per
addtaskcollection call) and times, through the real azure-batch SDK, what the app's timer and trigger ask of it:
- add one task (what the blob trigger does), p50 of 200;
- list tasks changed since a recent moment (`stateTransitionTime ge ...`, what reconcile sends), 10 matches;
- list completed tasks older than a cutoff (`state eq 'completed' and stateTransitionTime lt ...`, maxresults
  500, what cleanup sends) - first page;
- list every task ($select=id, 1,000 a page);
- get the job's task counts; one scheduler pass (in-process, under the backend lock);
- delete the job, until a Get Job answers 404.
With --simulate the job runs on a 16-node pool in scale mode (BATCH_EMULATOR_TASK_EXECUTION=simulate, no
process per task), so the listing and counts see completed tasks, as the app's job does; without it the tasks
stay active (no pool), the worst case for filters that match only completed tasks.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from azure.batch import BatchClient, models as m
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import ResourceNotFoundError
from azure.core.rest import HttpRequest

from devstack.batch_emulator.config import EmulatorConfig, from_mapping
from devstack.batch_emulator.server import EmulatorServer
from devstack.batch_emulator.timeutil import utcnow


def _odata(moment: datetime) -> str:
    return "DateTime'" + moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ") + "'"


def app_shaped_task(task_id: str) -> m.BatchTaskCreateOptions:
    """A task the size and shape of the app's (shared/task_spec.py): resource file, 3 output files, metadata."""
    sas = "?sv=2024-08-04&se=2026-12-31T00%3A00%3A00Z&sr=b&sp=r&sig=" + "x" * 44
    container = "http://127.0.0.1:1/devstoreaccount1/output" + sas

    def out(pattern: str, path: str, condition: str, headers: list | None = None) -> m.OutputFile:
        return m.OutputFile(file_pattern=pattern, destination=m.OutputFileDestination(
            container=m.OutputFileBlobContainerDestination(container_url=container, path=path,
                                                           upload_headers=headers)),
            upload_options=m.OutputFileUploadConfiguration(upload_condition=condition))
    headers = [m.OutputFileUploadHeader(name="x-ms-blob-content-type", value="audio/mpeg")] + [
        m.OutputFileUploadHeader(name=f"x-ms-meta-{k}", value=v) for k, v in
        {"source_container": "input", "source_etag": "0x8DC0000000000", "batch_task_id": task_id,
         "source_name": f"day/{task_id}.mp4"}.items()]
    return m.BatchTaskCreateOptions(
        id=task_id, display_name=f"day/{task_id}.mp4",
        command_line="/bin/sh -c 'ffmpeg -nostdin -hide_banner -y -i input.mp4 -vn -map 0:a:0 -q:a 4 output.mp3'",
        resource_files=[m.ResourceFile(http_url=f"http://127.0.0.1:1/devstoreaccount1/input/day/{task_id}.mp4{sas}",
                                       file_path="input.mp4")],
        output_files=[out("output.mp3", f"day/{task_id}.mp3", "tasksuccess", headers),
                      out("ffmpeg.log", f"{task_id}/ffmpeg.log", "taskfailure"),
                      out("../stderr.txt", f"{task_id}/stderr.txt", "taskfailure")],
        constraints=m.BatchTaskConstraints(max_wall_clock_time=timedelta(minutes=60), max_task_retry_count=1,
                                           retention_time=timedelta(minutes=1)))


class _Figures(dict):
    """Prints each figure as it is measured (a long run that fails late keeps what it measured)."""

    def __setitem__(self, name: str, value) -> None:
        super().__setitem__(name, value)
        print(f"  {name}: {value}", file=sys.stderr, flush=True)


def _p50(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


def _timed(call, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        out.append(time.perf_counter() - started)
    return out


def profile(tasks: int, data_dir: Path | None, simulate: bool) -> dict:
    settings = {"port": "0", "ffmpeg_on_path": "false", "log_level": "WARNING", "node_start_delay": "0"}
    if simulate:
        settings.update(task_execution="simulate", simulated_duration="fixed:0", simulated_outputs="none")
    cfg = from_mapping(settings, EmulatorConfig(data_dir=data_dir, max_nodes_per_pool=16))
    figures: dict = _Figures({"tasks": tasks, "store": "memory" if data_dir is None else "sqlite",
                              "simulate": simulate})
    with EmulatorServer(cfg) as server:
        client = BatchClient(server.url, AzureNamedKeyCredential(cfg.account_name, cfg.account_key))
        pool_id = "no-such-pool"
        if simulate:
            pool_id = "scale-pool"
            client.create_pool(m.BatchPoolCreateOptions(
                id=pool_id, vm_size="standard_d2s_v5", target_dedicated_nodes=16, task_slots_per_node=8,
                virtual_machine_configuration=m.VirtualMachineConfiguration(
                    image_reference=m.BatchVmImageReference(publisher="canonical", offer="ubuntu-24_04-lts",
                                                            sku="server"),
                    node_agent_sku_id="batch.node.ubuntu 24.04")))
        client.create_job(m.BatchJobCreateOptions(id="scale-job", pool_info=m.BatchPoolInfo(pool_id=pool_id)))
        started = time.perf_counter()
        chunk = 5000
        for first in range(0, tasks, chunk):
            client.create_tasks("scale-job", [app_shaped_task(f"t{i:07d}")
                                              for i in range(first, min(tasks, first + chunk))])
        figures["fill_tasks_per_s"] = round(tasks / (time.perf_counter() - started))
        if simulate:  # wait until every task has run
            while client.get_job_task_counts("scale-job").task_counts.completed < tasks:
                time.sleep(0.5)
            figures["fill_and_run_s"] = round(time.perf_counter() - started, 1)
        figures["add_task_p50_ms"] = _p50(_timed(lambda: client.create_task(
            "scale-job", app_shaped_task(f"a{time.perf_counter_ns()}")), 200))
        recent = utcnow()
        for i in range(10):
            client.create_task("scale-job", app_shaped_task(f"r{i:07d}"))
        changed = f"stateTransitionTime ge {_odata(recent)}"
        fields = ["id", "state", "stateTransitionTime", "executionInfo", "nodeInfo", "displayName"]
        found = []
        figures["list_changed_p50_ms"] = _p50(_timed(lambda: found.append(len(list(client.list_tasks(
            "scale-job", filter=changed, select=fields, max_results=1000)))), 5))
        figures["list_changed_matches"] = found[-1]
        completed = f"state eq 'completed' and stateTransitionTime lt {_odata(utcnow())}"
        figures["list_completed_first_page_p50_ms"] = _p50(_timed(lambda: next(iter(client.list_tasks(
            "scale-job", filter=completed, select=fields, max_results=500).by_page()), None) and None, 5))
        pages = []
        figures["list_all_ids_s"] = round(_timed(lambda: pages.append(sum(1 for _ in client.list_tasks(
            "scale-job", select=["id"], max_results=1000))), 1)[0], 2)
        figures["task_counts_p50_ms"] = _p50(_timed(lambda: client.get_job_task_counts("scale-job"), 20))
        assert server.backend is not None and server.scheduler is not None

        def one_pass() -> None:
            with server.backend.lock:
                server.scheduler.run_pass(utcnow())
        figures["scheduler_pass_p50_ms"] = _p50(_timed(one_pass, 20))
        started = time.perf_counter()
        # one DELETE (202), as shared/batch.py sends it (begin_delete_job would poll)
        deleted = client.send_request(HttpRequest("DELETE", "/jobs/scale-job", params={"api-version": "2025-06-01"}))
        assert deleted.status_code == 202, deleted.status_code
        while True:
            try:
                client.get_job("scale-job")
            except ResourceNotFoundError:
                break
            time.sleep(0.05)
        figures["delete_job_s"] = round(time.perf_counter() - started, 2)
        client.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_emulator", description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--in-memory", action="store_true", help="in-memory store instead of SQLite")
    parser.add_argument("--simulate", action="store_true", help="run the tasks in scale mode on a 16-node pool")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="scale-emulator-") as tmp:
        figures = profile(args.tasks, None if args.in_memory else Path(tmp), args.simulate)
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
