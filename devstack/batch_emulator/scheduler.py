"""The node scheduler: a background thread that makes pools, nodes and tasks behave like the service.

Each pass (every `scheduler_tick` seconds, or sooner when the API changes something):
- allocation: bring each pool's nodes to its targets (capped by max_nodes_per_pool, reported as a resize error
  like a core quota), move nodes creating -> starting -> (waitingforstarttask) -> idle after node_start_delay,
  run the start task once per node (waitForSuccess: tasks wait for it; failure leaves the node starttaskfailed),
  remove nodes honouring the deallocation option (requeue / terminate / taskcompletion / retaineddata), finish
  resizes (allocationState steady) or time them out (resizeTimeout), stop resizes, delete pools;
- metrics and autoscale: one metric sample per pool every sample_period (task counts, node counts and the
  resource metrics its task processes used, node_metrics.py), visible to formulas after the sample lag;
  evaluations when due;
- dispatch: active tasks go to free slots (requiredSlots, taskSlotsPerNode, nodeFillType spread/pack, job
  priority, maxParallelTasks, dependencies) and run on a bounded thread pool through executor.run_task;
- housekeeping: deleted jobs are forgotten once their processes are gone, task directories are removed after
  their retentionTime, the node-seconds meter advances.

The scheduler knows nothing of HTTP; it only uses the backend state under its lock.
"""
from __future__ import annotations

import logging
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from devstack.ffmpeg import bin_dir

from . import store
from .backend import Backend, lifecycle, nodes as node_model
from .backend.autoscaling import record_sample
from .backend.records import JobRecord, NodeRecord, PoolRecord, TaskRecord
from .executor import StorageAccess, TaskLaunch, TaskOutcome, run_task, set_aside, task_directory
from .meter import Meter
from .node_metrics import NodeMetrics
from .simulation import Simulation
from .timeutil import UNLIMITED_DURATION, iso, parse_duration, parse_iso, utcnow

log = logging.getLogger("devstack.batch_emulator.scheduler")

RETENTION_SWEEP_SECONDS = 5.0
METER_SAVE_SECONDS = 5.0
START_TASK_WORKERS = 4
MIN_PASS_GAP = 0.01                      # coalesce bursts of wake-ups (e.g. hundreds of task adds per second)
QUOTA_ERROR = "AccountCoreQuotaReached"  # what the service reports when a resize hits the core quota
RESIZE_TIMEOUT_ERROR = "AllocationTimedout"

Runner = Callable[[TaskLaunch, StorageAccess, threading.Event], TaskOutcome]


class Scheduler:
    def __init__(self, backend: Backend, runner: Runner = run_task) -> None:
        self.b = backend
        self.s = backend.state
        self.cfg = backend.config
        self._runner = runner
        self._storage = StorageAccess(connection_string=self.cfg.storage_connection_string)
        # Job tasks and start tasks get separate workers so a burst of booting nodes never delays a task that
        # is already shown as running.
        self._workers = ThreadPoolExecutor(max_workers=self.cfg.max_running_tasks, thread_name_prefix="batch-task")
        self._start_workers = ThreadPoolExecutor(max_workers=START_TASK_WORKERS, thread_name_prefix="batch-start")
        # Scale mode: tries are timed here instead of run as processes (simulation.py).
        self._sim = Simulation(self.cfg, self._storage) if self.cfg.simulates else None
        self._thread = threading.Thread(target=self._loop, name="batch-scheduler", daemon=True)
        self._stopping = False
        self._in_flight = 0               # job-task processes currently running (host-wide budget)
        self._last_pass = time.monotonic()
        self._last_sweep = 0.0
        self._last_meter_save = time.monotonic()
        self._last_sample: dict[str, datetime] = {}
        self.node_metrics = NodeMetrics(self.s.work_dir / "nodes", poll_seconds=self.cfg.resource_poll)
        self._fruitless_dispatch: tuple | None = None
        self._extra_path: list[Path] = []
        saved = None
        for key, _parent, doc in self.s.store.load(store.META):
            if key == "meter":
                saved = doc
        self.meter = Meter(saved)

    # --- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        if self.cfg.ffmpeg_on_path:
            self._extra_path = [bin_dir(self.s.work_dir / "tools")]
        self.node_metrics.start()
        self._thread.start()

    def stop(self) -> None:
        """Stop scheduling and kill task processes without recording outcomes: tasks that were running stay
        `running` in the store, so the next start requeues them exactly like a crash would."""
        self.node_metrics.stop()
        with self.s.lock:
            self._stopping = True
            for job in self.s.jobs.values():
                for task in job.tasks.values():
                    if task.cancel is not None:
                        task.cancel.set()
            for pool in self.s.pools.values():
                for node in pool.nodes.values():
                    if node.start_task_cancel is not None:
                        node.start_task_cancel.set()
            self.s.store.put(store.META, "meter", self.meter.persisted())
            self.s.wake()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._workers.shutdown(wait=True, cancel_futures=True)
        self._start_workers.shutdown(wait=True, cancel_futures=True)
        if self._sim is not None:
            self._sim.close()

    def _loop(self) -> None:
        while True:
            trash: list[Path] = []
            with self.s.lock:
                if self._stopping:
                    return
                try:
                    trash = self.run_pass(utcnow())
                except Exception:  # keep scheduling even if one pass hits a bug; it is logged with its stack
                    log.exception("scheduler pass failed")
                self.s.changed.wait(timeout=self._wait_seconds())
            for path in trash:
                shutil.rmtree(path, ignore_errors=True)
            time.sleep(MIN_PASS_GAP)

    def _wait_seconds(self) -> float:
        """Until the next pass: the tick, or sooner when a simulated try ends before it."""
        due = self._sim.next_at() if self._sim is not None else None
        if due is None:
            return self.cfg.scheduler_tick
        return max(0.0, min(self.cfg.scheduler_tick, due - time.monotonic()))

    # --- one pass (lock held) ----------------------------------------------------------------------------
    def run_pass(self, now: datetime) -> list[Path]:
        trash: list[Path] = self.s.trash
        self.s.trash = []
        mono = time.monotonic()
        self.meter.accumulate(self.s.pools.values(), mono - self._last_pass)
        self._last_pass = mono
        for pool in list(self.s.pools.values()):
            self._reconcile_pool(pool, now, trash)
        self._sample_metrics(now)
        self.b.pools.evaluate_due(now)
        for pool in list(self.s.pools.values()):  # autoscale may have changed targets: allocate now
            if pool.doc.get("allocationState") == "resizing":
                self._reconcile_pool(pool, now, trash)
        self._forget_deleted_jobs(trash)
        self._expire_jobs(now)
        if self._sim is not None:
            self._finish_simulated(mono)
        self._dispatch(now)
        if mono - self._last_sweep >= RETENTION_SWEEP_SECONDS:
            self._last_sweep = mono
            self._sweep_retention(now, trash)
        if mono - self._last_meter_save >= METER_SAVE_SECONDS:
            self._last_meter_save = mono
            self.s.store.put(store.META, "meter", self.meter.persisted())
        return trash

    # --- pools and nodes ---------------------------------------------------------------------------------
    def _reconcile_pool(self, pool: PoolRecord, now: datetime, trash: list[Path]) -> None:
        if pool.state == "deleting":
            for node in list(pool.nodes.values()):
                if node.leaving is None:
                    node.sys["leaving"] = "requeue"
            self._process_leaving(pool, now, trash)
            if not pool.nodes:
                self.s.forget_pool(pool)
                self._last_sample.pop(pool.key, None)
                trash.append(self.s.work_dir / "nodes" / pool.key)
            return
        allocation = pool.doc.get("allocationState")
        if allocation == "stopping":
            for node in [n for n in pool.nodes.values() if n.state == "creating" and n.leaving is None]:
                self.s.forget_node(pool, node)  # not yet allocated: the stop cancels it
                trash.append(self.s.node_dir(pool.key, node.id))
            live_d = sum(1 for n in pool.nodes.values() if n.is_dedicated and n.leaving is None)
            live_l = sum(1 for n in pool.nodes.values() if not n.is_dedicated and n.leaving is None)
            pool.set(targetDedicatedNodes=live_d, targetLowPriorityNodes=live_l, allocationState="steady",
                     allocationStateTransitionTime=iso(now))
            self.s.save_pool(pool)
        elif allocation == "resizing":
            self._resize_step(pool, now)
        self._progress_nodes(pool, now)
        self._process_leaving(pool, now, trash)
        if pool.doc.get("allocationState") == "resizing":
            self._maybe_finish_resize(pool, now)
        self._update_counts(pool)

    def _resize_step(self, pool: PoolRecord, now: datetime) -> None:
        cap = self.cfg.max_nodes_per_pool
        changed = False
        for dedicated, target_field in ((True, "targetDedicatedNodes"), (False, "targetLowPriorityNodes")):
            target = int(pool.doc.get(target_field) or 0)
            live = [n for n in pool.nodes.values() if n.is_dedicated == dedicated and n.leaving is None]
            if len(live) < target:
                for _ in range(target - len(live)):
                    in_pool = sum(1 for n in pool.nodes.values() if n.leaving is None)
                    if in_pool >= cap:
                        self._report_cap(pool, now)
                        break
                    node = node_model.new_node(pool, dedicated, self.s.account_url, now)
                    node.sys.update(seq=self.s.next_seq(), bootStartedAt=iso(now))
                    pool.nodes[node.id] = node
                    self.s.save_node(node)
                    changed = True
            elif len(live) > target:
                option = pool.sys.get("deallocationOption") or "requeue"
                for node in node_model.removal_order(live)[: len(live) - target]:
                    node.sys["leaving"] = option
                    self.s.save_node(node)
                    changed = True
        if changed:
            self.s.save_pool(pool)

    def _report_cap(self, pool: PoolRecord, now: datetime) -> None:
        if pool.sys.get("capReported"):
            return
        pool.sys["capReported"] = True
        cap = self.cfg.max_nodes_per_pool
        error = {"code": QUOTA_ERROR,
                 "message": f"The emulator allocates at most {cap} nodes per pool (max_nodes_per_pool), like an "
                            f"account core quota.",
                 "values": [{"name": "MaxNodesPerPool", "value": str(cap)}]}
        pool.set(resizeErrors=[error])
        self.s.save_pool(pool)

    def _maybe_finish_resize(self, pool: PoolRecord, now: datetime) -> None:
        cap = self.cfg.max_nodes_per_pool
        wanted_d = int(pool.doc.get("targetDedicatedNodes") or 0)
        wanted_l = int(pool.doc.get("targetLowPriorityNodes") or 0)
        live_d = [n for n in pool.nodes.values() if n.is_dedicated and n.leaving is None]
        live_l = [n for n in pool.nodes.values() if not n.is_dedicated and n.leaving is None]
        capped = pool.sys.get("capReported") and len(live_d) + len(live_l) >= cap
        counts_ok = capped or (len(live_d) == wanted_d and len(live_l) == wanted_l)
        allocated = not any(n.state == "creating" for n in live_d + live_l)
        leaving = any(n.leaving is not None for n in pool.nodes.values())
        if counts_ok and allocated and not leaving:
            pool.set(allocationState="steady", allocationStateTransitionTime=iso(now))
            self.s.save_pool(pool)
            return
        deadline = pool.sys.get("resizeDeadline")
        if deadline and now > parse_iso(deadline):
            error = {"code": RESIZE_TIMEOUT_ERROR,
                     "message": "Desired number of nodes could not be reached within the resize timeout.",
                     "values": []}
            pool.set(allocationState="steady", allocationStateTransitionTime=iso(now),
                     resizeErrors=[*(pool.doc.get("resizeErrors") or []), error])
            self.s.save_pool(pool)

    def _update_counts(self, pool: PoolRecord) -> None:
        d = sum(1 for n in pool.nodes.values() if n.is_dedicated)
        lp = len(pool.nodes) - d
        if pool.doc.get("currentDedicatedNodes") != d or pool.doc.get("currentLowPriorityNodes") != lp:
            pool.set(currentDedicatedNodes=d, currentLowPriorityNodes=lp)
            self.s.save_pool(pool)

    def _progress_nodes(self, pool: PoolRecord, now: datetime) -> None:
        delay = timedelta(seconds=self.cfg.node_start_delay)
        for node in list(pool.nodes.values()):
            if node.leaving is not None:
                continue
            boot = node.sys.get("bootStartedAt")
            if boot is None:
                node.sys["bootStartedAt"] = boot = iso(now)
            started = parse_iso(boot)
            if node.state == "creating" and now >= started + delay / 2:
                node.transition("starting", now, touch=False)
                node.set(lastBootTime=iso(now))
                self.s.save_node(node)
            if node.state == "starting" and now >= started + delay:
                start_task = pool.doc.get("startTask")
                if start_task:
                    wait = start_task.get("waitForSuccess", True)
                    node.transition("waitingforstarttask" if wait else "idle", now, touch=False)
                    self._launch_start_task(pool, node, start_task, retry_count=0, now=now)
                else:
                    node.transition("idle", now, touch=False)
                self.s.save_node(node)

    def _process_leaving(self, pool: PoolRecord, now: datetime, trash: list[Path]) -> None:
        for node in [n for n in pool.nodes.values() if n.leaving is not None]:
            option = node.leaving
            if node.state != "leavingpool":
                node.transition("leavingpool", now, touch=False)
                node.set(schedulingState="disabled")
                if node.start_task_cancel is not None:
                    node.start_task_cancel.set()
                    node.start_task_cancel = None
            for ref in list(node.running):
                task = self.s.task_by_ref(ref)
                if task is None:
                    node.running.pop(ref, None)
                elif option == "requeue":
                    lifecycle.requeue(self.s, task, now)
                elif option == "terminate":
                    lifecycle.end(self.s, task, now, lifecycle.TASK_ENDED_NODE_REMOVED)
                # taskcompletion / retaineddata: wait for the running tasks; nothing new is scheduled here
            if not node.running:
                self.s.forget_node(pool, node)
                trash.append(self.s.node_dir(pool.key, node.id))
            else:
                self.s.save_node(node)

    # --- start task --------------------------------------------------------------------------------------
    def _launch_start_task(self, pool: PoolRecord, node: NodeRecord, start_task: dict[str, Any], retry_count: int,
                           now: datetime) -> None:
        info: dict[str, Any] = {"state": "running", "startTime": iso(now), "retryCount": retry_count}
        if retry_count:
            info["lastRetryTime"] = iso(now)
        node.set(startTaskInfo=info)
        cancel = threading.Event()
        node.start_task_cancel = cancel
        token = lifecycle.new_run_token()
        node.sys["startTaskRun"] = token
        launch = TaskLaunch(
            job_id=None, task_id="starttask", pool_id=pool.id, node_id=node.id,
            node_root=self.s.node_dir(pool.key, node.id), account_name=self.cfg.account_name,
            account_url=self.s.account_url, command_line=start_task["commandLine"],
            resource_files=list(start_task.get("resourceFiles") or []), output_files=[],
            environment_settings=list(start_task.get("environmentSettings") or []), max_wall_clock=None,
            retry_count=retry_count, is_dedicated=node.is_dedicated, is_start_task=True,
            extra_path=tuple(self._extra_path))
        if self._sim is not None:  # scale mode: the start task succeeds at once (lock held; the RLock re-enters)
            self._record_start_task(pool.key, node.id, token, launch, self._sim.start_task_outcome(launch, now))
            return
        self._start_workers.submit(self._run_start_task, pool.key, node.id, token, launch, cancel)

    def _run_start_task(self, pool_key: str, node_id: str, token: int, launch: TaskLaunch,
                        cancel: threading.Event) -> None:
        self._record_start_task(pool_key, node_id, token, launch, self._safe_run(launch, cancel))

    def _record_start_task(self, pool_key: str, node_id: str, token: int, launch: TaskLaunch,
                           outcome: TaskOutcome) -> None:
        with self.s.lock:
            if self._stopping:
                return
            pool = self.s.pools.get(pool_key)
            node = pool.nodes.get(node_id) if pool else None
            if node is None or node.sys.get("startTaskRun") != token or node.leaving is not None:
                return
            node.start_task_cancel = None
            start_task = pool.doc.get("startTask") or {}
            now = utcnow()
            info = dict(node.doc.get("startTaskInfo") or {})
            info.update(state="completed", startTime=iso(outcome.start_time), endTime=iso(outcome.end_time),
                        result=outcome.result)
            if outcome.exit_code is not None:
                info["exitCode"] = outcome.exit_code
            if outcome.failure_info:
                info["failureInfo"] = outcome.failure_info
            max_retries = int(start_task.get("maxTaskRetryCount") or 0)
            if outcome.result == "failure" and outcome.retryable and \
                    (max_retries == -1 or launch.retry_count < max_retries):
                self._launch_start_task(pool, node, start_task, launch.retry_count + 1, now)
                self.s.save_node(node)
                return
            node.set(startTaskInfo=info)
            if outcome.result == "success":
                if node.state == "waitingforstarttask":
                    node.transition("idle", now, touch=False)
            elif start_task.get("waitForSuccess", True):
                node.transition("starttaskfailed", now, touch=False)
                log.info("start task failed on %s/%s: %s", pool.id, node_id,
                         (outcome.failure_info or {}).get("code"))
            self.s.save_node(node)
            self.s.wake()

    # --- metrics -----------------------------------------------------------------------------------------
    def _sample_metrics(self, now: datetime) -> None:
        period = self.cfg.sample_period
        due = [p for p in self.s.pools.values()
               if p.state == "active" and (p.key not in self._last_sample or now - self._last_sample[p.key] >= period)]
        if not due:
            return
        active_by_pool: dict[str, int] = {}
        for task in self.s.active.values():
            job = self.s.jobs.get(task.job_key)
            if job is not None and job.pool_key is not None:
                active_by_pool[job.pool_key] = active_by_pool.get(job.pool_key, 0) + 1
        for pool in due:
            if pool.key not in self._last_sample:
                self._last_sample[pool.key] = now  # first sample one period after the pool appears
                continue
            running = sum(len(n.running) for n in pool.nodes.values())
            active = active_by_pool.get(pool.key, 0)
            dedicated = sum(1 for n in pool.nodes.values() if n.is_dedicated)
            elapsed = (now - self._last_sample[pool.key]).total_seconds()
            record_sample(pool, now, self.node_metrics.pool_sample(pool.key, list(pool.nodes), elapsed))
            record_sample(pool, now, {
                "$ActiveTasks": active, "$RunningTasks": running, "$PendingTasks": active + running,
                "$SucceededTasks": pool.completions["succeeded"], "$FailedTasks": pool.completions["failed"],
                "$CurrentDedicatedNodes": dedicated, "$CurrentLowPriorityNodes": len(pool.nodes) - dedicated,
                "$PreemptedNodeCount": 0, "$SampleNodeCount": len(pool.nodes),
                "$UsableNodeCount": sum(1 for n in pool.nodes.values() if n.state in ("idle", "running")),
            })
            pool.completions = {"succeeded": 0, "failed": 0}
            self._last_sample[pool.key] = now

    # --- dispatch ----------------------------------------------------------------------------------------
    def _dispatch(self, now: datetime) -> None:
        # Simulated tries use no process: only node slots bound them.
        budget = self.cfg.max_running_tasks - self._in_flight if self._sim is None else len(self.s.active)
        if budget <= 0 or not self.s.active:
            return
        free: dict[str, list[NodeRecord]] = {}
        for pool in self.s.pools.values():
            if pool.state != "active":
                continue
            slots = int(pool.doc.get("taskSlotsPerNode") or 1)
            nodes = [n for n in pool.nodes.values() if node_model.is_schedulable(n) and n.used_slots < slots]
            if nodes:
                free[pool.key] = nodes
        if not free:
            return
        # Nothing new since the last pass placed nothing (same queue, same free slots): skip the O(queue) scan.
        signature = (self.s.active_version, tuple(sorted((k, sum(n.used_slots for n in ns), len(ns))
                                                         for k, ns in free.items())))
        if signature == self._fruitless_dispatch:
            return
        started = 0
        queue = list(self.s.active.values())
        priority = {j.key: int(j.doc.get("priority", 0)) for j in self.s.jobs.values()}
        if len(set(priority.values())) > 1:  # stable sort: FIFO within a priority
            queue.sort(key=lambda t: -priority.get(t.job_key, 0))
        running_per_job: dict[str, int] | None = None
        for task in queue:
            if budget <= 0 or not free:
                break
            job = self.s.jobs.get(task.job_key)
            if job is None or job.state != "active":
                self.s.dequeue(task)
                continue
            pool_key = job.pool_key
            if pool_key not in free:
                continue
            max_parallel = int(job.doc.get("maxParallelTasks", -1))
            if max_parallel > 0:
                if running_per_job is None:
                    running_per_job = {}
                    for j in self.s.jobs.values():
                        running_per_job[j.key] = sum(1 for t in j.tasks.values() if t.state == "running")
                if running_per_job.get(job.key, 0) >= max_parallel:
                    continue
            if task.doc.get("dependsOn") and not self._dependencies_met(job, task):
                continue
            pool = self.s.pools[pool_key]
            node = self._pick_node(pool, free[pool_key], int(task.doc.get("requiredSlots") or 1))
            if node is None:
                continue
            self._start(job, task, pool, node, now)
            started += 1
            budget -= 1
            if running_per_job is not None:
                running_per_job[job.key] = running_per_job.get(job.key, 0) + 1
            slots = int(pool.doc.get("taskSlotsPerNode") or 1)
            free[pool_key] = [n for n in free[pool_key] if n.used_slots < slots]
            if not free[pool_key]:
                del free[pool_key]
        self._fruitless_dispatch = None if started else signature

    @staticmethod
    def _pick_node(pool: PoolRecord, candidates: list[NodeRecord], required: int) -> NodeRecord | None:
        slots = int(pool.doc.get("taskSlotsPerNode") or 1)
        fitting = [n for n in candidates if slots - n.used_slots >= required]
        if not fitting:
            return None
        fill = ((pool.doc.get("taskSchedulingPolicy") or {}).get("nodeFillType") or "spread").lower()
        if fill == "pack":
            return max(fitting, key=lambda n: n.used_slots)
        return min(fitting, key=lambda n: n.used_slots)

    def _dependencies_met(self, job: JobRecord, task: TaskRecord) -> bool:
        deps = task.doc.get("dependsOn") or {}
        wanted = [d.lower() for d in deps.get("taskIds") or []]
        for rng in deps.get("taskIdRanges") or []:
            wanted.extend(str(i) for i in range(int(rng["start"]), int(rng["end"]) + 1))
        for dep in wanted:
            other = job.tasks.get(dep)
            if other is None or other.state != "completed" or \
                    (other.doc.get("executionInfo") or {}).get("result") != "success":
                return False
        return True

    def _start(self, job: JobRecord, task: TaskRecord, pool: PoolRecord, node: NodeRecord, now: datetime) -> None:
        slots = int(task.doc.get("requiredSlots") or 1)
        token = lifecycle.attach(self.s, task, node, slots, now)
        cancel = threading.Event()
        task.cancel = cancel
        env = {e["name"]: e for e in job.doc.get("commonEnvironmentSettings") or []}
        env.update({e["name"]: e for e in task.doc.get("environmentSettings") or []})
        wall = (task.doc.get("constraints") or {}).get("maxWallClockTime")
        launch = TaskLaunch(
            job_id=job.id, task_id=task.id, pool_id=pool.id, node_id=node.id,
            node_root=self.s.node_dir(pool.key, node.id), account_name=self.cfg.account_name,
            account_url=self.s.account_url, command_line=task.doc["commandLine"],
            resource_files=list(task.doc.get("resourceFiles") or []),
            output_files=list(task.doc.get("outputFiles") or []),
            environment_settings=list(env.values()),
            max_wall_clock=None if not wall or wall == UNLIMITED_DURATION else parse_duration(wall),
            retry_count=int((task.doc.get("executionInfo") or {}).get("retryCount", 0)),
            is_dedicated=node.is_dedicated, extra_path=tuple(self._extra_path))
        if self._sim is not None:
            task.cancel = None  # nothing to kill: a terminate or delete just invalidates the run token
            self._sim.start(task.ref, token, launch, time.monotonic(), now)
            return
        self._in_flight += 1
        self._workers.submit(self._run_job_task, task.ref, token, launch, cancel)

    def _safe_run(self, launch: TaskLaunch, cancel: threading.Event) -> TaskOutcome:
        started = utcnow()
        try:
            return self._runner(launch, self._storage, cancel)
        except Exception as exc:  # the runner promises not to raise; a bug must still not wedge the task
            log.exception("task runner crashed for %s/%s", launch.job_id, launch.task_id)
            return TaskOutcome(exit_code=None, result="failure", failure_info={
                "category": "servererror", "code": "Unknown", "message": "An unknown scheduling error has occurred.",
                "details": [{"name": "Exception", "value": type(exc).__name__}]},
                start_time=started, end_time=utcnow(), retryable=False,
                task_dir=task_directory(launch.node_root, launch.job_id, launch.task_id))

    def _run_job_task(self, ref: str, token: int, launch: TaskLaunch, cancel: threading.Event) -> None:
        outcome = self._safe_run(launch, cancel)
        with self.s.lock:
            self._in_flight -= 1
            self._record_job_task(ref, token, outcome)

    def _finish_simulated(self, mono: float) -> None:
        """Scale mode: complete the simulated tries whose time is up (one store transaction for the pass)."""
        assert self._sim is not None
        due = self._sim.due(mono)
        if not due:
            return
        with self.s.store.batch():
            for item in due:
                task = self.s.task_by_ref(item.ref)
                if task is None or task.sys.get("run") != item.token:
                    continue  # terminated, requeued or deleted meanwhile
                if self._sim.needs_upload(item):  # the uploader thread records the outcome when done
                    self._sim.upload_then(item, lambda done, outcome: self._record_job_task(done.ref, done.token,
                                                                                            outcome))
                else:
                    self._record_job_task(item.ref, item.token, self._sim.outcome(item))

    def _record_job_task(self, ref: str, token: int, outcome: TaskOutcome) -> None:
        """A try's outcome: retry, or complete the task (takes the lock; re-entrant)."""
        with self.s.lock:
            if self._stopping:
                return
            task = self.s.task_by_ref(ref)
            if task is None or task.sys.get("run") != token:
                self.s.wake()  # terminated, requeued or deleted meanwhile: this outcome is stale
                return
            now = utcnow()
            constraints = task.doc.get("constraints") or {}
            max_retries = int(constraints.get("maxTaskRetryCount", 0))
            retry_count = int((task.doc.get("executionInfo") or {}).get("retryCount", 0))
            if outcome.result == "failure" and outcome.retryable and (max_retries == -1 or retry_count < max_retries):
                lifecycle.retry(self.s, task, now)
            else:
                lifecycle.complete(self.s, task, now, exit_code=outcome.exit_code, result=outcome.result,
                                   failure_info=outcome.failure_info)
            self.s.wake()

    # --- housekeeping ------------------------------------------------------------------------------------
    def _forget_deleted_jobs(self, trash: list[Path]) -> None:
        for job in [j for j in self.s.jobs.values() if j.state == "deleting"]:
            if any(t.state == "running" and t.sys.get("run") for t in job.tasks.values()):
                continue
            for pool in self.s.pools.values():
                for node in pool.nodes.values():
                    trash.append(set_aside(self.s.node_dir(pool.key, node.id) / "workitems" / job.id))
            self.s.forget_job(job)

    def _expire_jobs(self, now: datetime) -> None:
        """Job constraints.maxWallClockTime: measured from job creation; the job is terminated when exceeded."""
        for job in self.s.jobs.values():
            if job.state not in ("active", "disabled"):
                continue
            wall = (job.doc.get("constraints") or {}).get("maxWallClockTime")
            if not wall or wall == UNLIMITED_DURATION:
                continue
            if now >= parse_iso(job.doc["creationTime"]) + parse_duration(wall):
                for task in list(job.tasks.values()):
                    self.s.dequeue(task)
                    if task.state == "running":
                        lifecycle.end(self.s, task, now, lifecycle.TASK_ENDED_BY_USER)
                job.transition("terminating", now)
                lifecycle.finish_job(self.s, job, now, "MaxWallClockTimeExpiry")

    def _sweep_retention(self, now: datetime, trash: list[Path]) -> None:
        """Completed tasks whose retentionTime has passed lose their directory (State keeps them in due order)."""
        for task in self.s.retention_due(now):
            job = self.s.jobs.get(task.job_key)
            info = task.doc.get("nodeInfo") or {}
            if job is not None and info.get("poolId") and info.get("nodeId"):
                root = self.s.node_dir(info["poolId"].lower(), info["nodeId"])
                trash.append(set_aside(task_directory(root, job.id, task.id)))
            task.sys["cleaned"] = True
            self.s.save_task(task)
