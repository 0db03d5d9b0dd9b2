"""One compressed day of uploads through the app, in a process of its own (bench/scale.py starts it).

    .venv/bin/python -m bench.scale_day CONFIG.json RESULT.json

This process is "the function process": it runs the app's real entry points in-process - the blob trigger
(`function_app.process_upload` with a BlobClient, as the host binds it, from host.json's parallelism) and the
timer (`function_app.reconcile_and_scale`, one tick per `tick_seconds` of real time, standing for the
1-minute schedule) - against Azurite and the Batch emulator in scale mode. Its peak RSS is reported.

The day is the config's phases: `["burst", ticks, share]` releases that share of the uploads evenly over that
many ticks (a producer writes the blob, then the trigger runs for it; ~2 % are delivered twice, as the host's
at-least-once delivery does); `["idle", ticks]` uploads nothing. A burst the trigger cannot keep up with runs
longer (its backlog is reported); an idle gap starts once the burst is consumed. Then the day drains (every
task done, no row left queued/running, no completion event left to publish) and a tail of idle ticks follows
(cleanup, parking, job rotation).

Calls are counted on the wire by two counting transports (bench/counting.py): the trigger's service and the
timer's service are built separately (`shared.runtime.build_service`, `build_timer_service`) so each tick's
calls are its own. The config holds the app settings, which the bench already chose.
"""
from __future__ import annotations

import json
import os
import queue
import random
import resource
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import BlobClient, BlobServiceClient, ContentSettings

REDELIVERY_SHARE = 0.02
PAYLOAD = b"\x00\x00\x00\x18ftypmp42" + bytes(1000)  # the trigger reads properties only: size and name matter


@dataclass
class Tick:
    started: float            # seconds since the day began
    wall: float
    calls: dict[str, int]     # batch / table / blob / list (List Blobs) / other
    errors: list[str] = field(default_factory=list)


LIST_BLOBS = ("blob", "List Blobs")  # a pseudo-operation: also counted under its path shape


def _by_kind(counts: Counter) -> dict[str, int]:
    """batch / table / blob / other (queue: completion events) requests, and how many blob ones were List Blobs."""
    out = {"batch": 0, "table": 0, "blob": 0, "list": 0, "other": 0}
    for (service, operation), n in counts.items():
        if (service, operation) == LIST_BLOBS:
            out["list"] += n
            continue
        out[service if service in out else "other"] += n
    return out


SHARED = str(Path(__file__).resolve().parent.parent / "shared") + os.sep
# The resource owners and plumbing every part of the app calls through: a call is charged to their caller.
_PLUMBING = {"batch.py", "batch_types.py", "clients.py", "log.py", "table.py", "schema.py", "__init__.py"}


def app_module(frame) -> str:
    """The shared/ module that made a request: the first caller above the resource owners (e.g. "reconcile"), or
    the owner itself when the request came from its own worker thread (e.g. "ledger/table"); "-" when none."""
    owner = None
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(SHARED):
            module = name[len(SHARED):].removesuffix(".py")
            if os.path.basename(name) not in _PLUMBING:
                return module
            owner = owner or module
        frame = frame.f_back
    return owner or "-"


def counting_transport(services: dict[str, str]):
    """bench/counting.py's transport, also telling List Blobs (GET ...?comp=list) from other container GETs,
    and counting requests per app module (which part of the tick spends them)."""
    from bench.counting import CountingTransport

    class ListCounting(CountingTransport):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.by_module: Counter[tuple[str, str]] = Counter()

        def send(self, request, **kwargs):
            parts = urlsplit(request.url)
            service = self._services.get(parts.netloc, "other")
            module = app_module(sys._getframe(1))
            with self._lock:
                self.by_module[(service, module)] += 1
                if service == "blob" and request.method == "GET" and "comp=list" in parts.query:
                    self.counts[LIST_BLOBS] += 1
            return super().send(request, **kwargs)

    return ListCounting(services)


class Day:
    def __init__(self, config: dict[str, Any]) -> None:
        from shared import runtime
        from shared.runtime import build_service, build_timer_service
        from shared.settings import Settings, TimerSettings

        self.cfg = config
        self.values: dict[str, str] = config["values"]
        os.environ.update(self.values)  # what the host's app settings would be (function_app reads some at import)
        services = config["services"]
        self.trigger_transport = counting_transport(services)
        self.timer_transport = counting_transport(services)
        settings = Settings.from_env(self.values)
        self.settings = settings
        runtime.set_service(build_service(settings, {"transport": self.trigger_transport}))
        timer_base = build_service(settings, {"transport": self.timer_transport})
        runtime.set_timer_service(build_timer_service(timer_base, TimerSettings.from_env(self.values)))
        conn = self.values["MEDIA_STORAGE"]
        self.conn = conn
        self.producer = BlobServiceClient.from_connection_string(conn).get_container_client(settings.input_container)
        self.batch = BatchClient(self.values["BATCH_ACCOUNT_URL"], AzureNamedKeyCredential(
            self.values["BATCH_ACCOUNT_NAME"], self.values["BATCH_ACCOUNT_KEY"]))
        self.ledger = build_service(settings).ledger  # uncounted: the harness's own drain check
        self.read_rows_keys = self._count_ledger_reads()
        self.ticks: list[Tick] = []
        self.uploaded: dict[str, str] = {}
        self.deliveries = 0
        self.trigger_errors: Counter[str] = Counter()
        self.bursts: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._rng = random.Random(13)
        self._t0 = time.monotonic()

    @staticmethod
    def _count_ledger_reads() -> Counter[str]:
        """Row keys asked of Ledger.read_rows, by calling app module: its point reads run on the ledger's own worker
        threads, where the transport cannot see who asked. Measurement only: the call goes through unchanged."""
        from shared.ledger.table import Ledger

        counts: Counter[str] = Counter()
        lock = threading.Lock()
        original = Ledger.read_rows

        def read_rows(ledger, row_keys, *args, **kwargs):
            with lock:
                counts[app_module(sys._getframe(1))] += len(row_keys)
            return original(ledger, row_keys, *args, **kwargs)

        Ledger.read_rows = read_rows  # type: ignore[method-assign]
        return counts

    # --- the timer ------------------------------------------------------------------------------------------
    def _timer_loop(self) -> None:
        import function_app

        period = float(self.cfg["tick_seconds"])
        next_at = time.monotonic()
        while not self._stop.is_set():
            before = self.timer_transport.snapshot()
            started = time.monotonic()
            errors: list[str] = []
            try:
                function_app.reconcile_and_scale(SimpleNamespace(past_due=False))
            except Exception as exc:  # noqa: BLE001 - TickFailed (a phase failed) is recorded, the day goes on
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
            wall = time.monotonic() - started
            calls = _by_kind(self.timer_transport.snapshot() - before)
            self.ticks.append(Tick(round(started - self._t0, 3), round(wall, 4), calls, errors))
            next_at = max(next_at + period, time.monotonic())
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    # --- producer + trigger ----------------------------------------------------------------------------------
    def _deliver(self, name: str, fresh: bool) -> bool:
        """Upload (when fresh) and run the trigger for the blob; True when the trigger should run again."""
        import function_app

        if fresh:
            response = self.producer.get_blob_client(name).upload_blob(
                PAYLOAD, overwrite=True, content_settings=ContentSettings(content_type="video/mp4"))
            with self._lock:
                self.uploaded[name] = response["etag"]
        client = BlobClient.from_connection_string(self.conn, self.settings.input_container, name,
                                                   transport=self.trigger_transport)
        try:
            function_app.process_upload(client)
        except Exception as exc:  # noqa: BLE001 - the app remembered it (pending); the timer retries it
            with self._lock:
                self.trigger_errors[type(exc).__name__] += 1
        with self._lock:
            self.deliveries += 1
            return fresh and self._rng.random() < REDELIVERY_SHARE

    def _burst(self, pool: ThreadPoolExecutor, names: list[str], ticks: int) -> None:
        started = time.monotonic()
        span = ticks * float(self.cfg["tick_seconds"])
        pending: queue.Queue = queue.Queue()

        def work(name: str, fresh: bool) -> None:
            if self._deliver(name, fresh):
                pending.put(pool.submit(work, name, False))  # an at-least-once redelivery, before this one ends

        for i, name in enumerate(names):
            due = started + span * i / max(1, len(names))
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pending.put(pool.submit(work, name, True))
        released = time.monotonic() - started
        while not pending.empty():
            pending.get().result()
        self.bursts.append({"uploads": len(names), "ticks": ticks, "planned_s": round(span, 1),
                            "released_s": round(released, 1), "consumed_s": round(time.monotonic() - started, 1)})

    # --- the day ---------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        from bench.submission import host_parallelism

        size = int(self.cfg["uploads"])
        tick_seconds = float(self.cfg["tick_seconds"])
        names = [f"day/{i:06d}.mp4" for i in range(size)]
        phases = self.cfg["phases"]
        bursts = [p for p in phases if p[0] == "burst"]
        total_share = sum(p[2] for p in bursts)
        timer = threading.Thread(target=self._timer_loop, name="bench-timer", daemon=True)
        timer.start()
        given = 0
        with ThreadPoolExecutor(host_parallelism(), thread_name_prefix="bench-trigger") as pool:
            for phase in phases:
                if phase[0] == "idle":
                    time.sleep(phase[1] * tick_seconds)
                    continue
                count = size - given if phase is bursts[-1] else round(size * phase[2] / total_share)
                self._burst(pool, names[given:given + count], phase[1])
                given += count
        day_seconds = time.monotonic() - self._t0
        drain_started = time.monotonic()
        deadline = drain_started + float(self.cfg["drain_timeout_seconds"])
        drained = False
        while time.monotonic() < deadline:
            if self._drained():
                drained = True
                break
            time.sleep(2.0)
        drain_seconds = time.monotonic() - drain_started
        self._stop.wait(float(self.cfg["tail_seconds"]))  # idle ticks: cleanup, parking, job rotation
        self._stop.set()
        timer.join()
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        return {
            "uploads": size, "deliveries": self.deliveries, "uploaded": sorted(self.uploaded.items()),
            "trigger": {f"{s} {o}": n for (s, o), n in sorted(self.trigger_transport.snapshot().items())},
            "timer": {f"{s} {o}": n for (s, o), n in sorted(self.timer_transport.snapshot().items())},
            "timer_by_module": {f"{s} {m}": n for (s, m), n in sorted(self.timer_transport.by_module.items())},
            "trigger_by_module": {f"{s} {m}": n for (s, m), n in sorted(self.trigger_transport.by_module.items())},
            "read_rows_keys_by_caller": dict(self.read_rows_keys),
            "trigger_by_kind": _by_kind(self.trigger_transport.snapshot()),
            "timer_by_kind": _by_kind(self.timer_transport.snapshot()),
            "ticks": [t.__dict__ for t in self.ticks], "bursts": self.bursts,
            "day_seconds": round(day_seconds, 1), "drained": drained, "drain_seconds": round(drain_seconds, 1),
            "tail_seconds": float(self.cfg["tail_seconds"]), "peak_rss_mb": round(peak_rss_mb, 1),
            "trigger_errors": dict(self.trigger_errors),
        }

    def _drained(self) -> bool:
        """No task waiting or running in the app's job(s), no row queued or running, no upload pending, no
        completion event left to publish."""
        from shared.ledger import PENDING_PARTITION

        prefix = self.settings.job_id.replace("'", "''")
        for job in self.batch.list_jobs(filter=f"startswith(id, '{prefix}')", select=["id"]):
            counts = self.batch.get_job_task_counts(job.id).task_counts
            if counts.active or counts.running:
                return False
        unfinished = "PartitionKey eq @pk and (State eq 'queued' or State eq 'running')"
        if next(iter(self.ledger.query(unfinished, {"pk": self.settings.job_id}, select=["RowKey"])), None):
            return False
        if next(iter(self.ledger.query("PartitionKey eq @pk", {"pk": PENDING_PARTITION},
                                       select=["RowKey"])), None) is not None:
            return False
        # completion events still to publish (where the app has an outbox): their calls belong to the day too
        outbox = getattr(self.ledger, "outbox_page", None)
        return outbox is None or not outbox(1)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m bench.scale_day CONFIG.json RESULT.json", file=sys.stderr)
        return 2
    import logging
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("azure", "shared", "httpx", "urllib3"):  # the SDKs log every request at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    config = json.loads(Path(args[0]).read_text())
    result = Day(config).run()
    Path(args[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
