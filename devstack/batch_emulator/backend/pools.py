"""Pool operations: CRUD, autoscale (enable/disable/evaluate), resize/stop-resize/remove-nodes, nodes, node counts.

Operations change targets and allocation state and wake the scheduler, which allocates and removes nodes.
Behaviour references: SDK 15.1.0 docstrings (BatchPoolCreateOptions, begin_resize_pool, enable_pool_auto_scale)
and "Batch Status and Error Codes"; unverified choices are marked where they are made.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from .. import errors, ids, odata
from ..executor import resource_file_problem
from ..timeutil import format_duration, iso, parse_duration, parse_iso
from . import autoscaling, nodes as node_model, validate as v
from .records import NodeRecord, PoolRecord
from .state import State

POOL_PROPERTIES = ("id", "displayName", "url", "eTag", "lastModified", "creationTime", "state",
                   "stateTransitionTime", "allocationState", "allocationStateTransitionTime", "vmSize",
                   "virtualMachineConfiguration", "resizeTimeout", "resizeErrors", "currentDedicatedNodes",
                   "currentLowPriorityNodes", "targetDedicatedNodes", "targetLowPriorityNodes", "enableAutoScale",
                   "autoScaleFormula", "autoScaleEvaluationInterval", "autoScaleRun", "enableInterNodeCommunication",
                   "networkConfiguration", "startTask", "applicationPackageReferences", "taskSlotsPerNode",
                   "taskSchedulingPolicy", "userAccounts", "metadata", "stats", "mountConfiguration", "identity",
                   "upgradePolicy", "targetNodeCommunicationMode", "currentNodeCommunicationMode", "resourceTags",
                   "certificateReferences")
NODE_PROPERTIES = ("id", "url", "state", "schedulingState", "stateTransitionTime", "lastBootTime", "allocationTime",
                   "ipAddress", "ipv6Address", "affinityId", "vmSize", "totalTasksRun", "runningTasksCount",
                   "runningTaskSlotsCount", "totalTasksSucceeded", "recentTasks", "startTask", "startTaskInfo",
                   "errors", "isDedicated", "endpointConfiguration", "nodeAgentInfo", "virtualMachineInfo")
DEALLOCATION_OPTIONS = ("requeue", "terminate", "taskcompletion", "retaineddata")
NODE_FILL_TYPES = ("spread", "pack")
MIN_RESIZE_TIMEOUT = timedelta(minutes=5)
DEFAULT_RESIZE_TIMEOUT = timedelta(minutes=15)
MAX_TASK_SLOTS = 256


class PoolService:
    def __init__(self, state: State) -> None:
        self.s = state

    # --- lookups ------------------------------------------------------------------------------------------
    def _pool(self, pool_id: str, *, allow_deleting: bool = False) -> PoolRecord:
        pool = self.s.pool(pool_id)
        if pool is None:
            raise errors.pool_not_found()
        if not allow_deleting and pool.state == "deleting":
            raise errors.pool_being_deleted()
        return pool

    # --- create -------------------------------------------------------------------------------------------
    def create(self, body: Any) -> PoolRecord:
        body = v.body_object(body)
        pool_id = ids.validate(body.get("id"))
        v.string(body, "vmSize", required=True)
        v.string(body, "displayName")
        vmc = v.obj(body, "virtualMachineConfiguration")
        if vmc is None:
            if body.get("cloudServiceConfiguration") is not None:
                raise errors.invalid_property_value("cloudServiceConfiguration", "(object)",
                                                    "Cloud Services pools are retired; use virtualMachineConfiguration.")
            raise errors.missing_required_property("virtualMachineConfiguration")
        v.obj(vmc, "imageReference", required=True, path="virtualMachineConfiguration.imageReference")
        v.string(vmc, "nodeAgentSKUId", required=True, path="virtualMachineConfiguration.nodeAgentSKUId")
        slots = v.integer(body, "taskSlotsPerNode", default=1, minimum=1, maximum=MAX_TASK_SLOTS)
        policy = self._scheduling_policy(body)
        start_task = self._start_task(body)
        v.name_value_pairs(body, "metadata")
        v.boolean(body, "enableInterNodeCommunication")
        autoscale = bool(v.boolean(body, "enableAutoScale", default=False))
        now = self.s.now()

        with self.s.lock:
            if ids.key(pool_id) in self.s.pools:
                raise errors.pool_exists()
            doc: dict[str, Any] = dict(body)  # accept and echo properties the emulator does not interpret
            doc.update({
                "id": pool_id,
                "url": f"{self.s.account_url}/pools/{pool_id}",
                "creationTime": iso(now),
                "state": "active",
                "stateTransitionTime": iso(now),
                "allocationState": "steady",
                "allocationStateTransitionTime": iso(now),
                "currentDedicatedNodes": 0,
                "currentLowPriorityNodes": 0,
                "enableInterNodeCommunication": bool(body.get("enableInterNodeCommunication", False)),
                "taskSlotsPerNode": slots,
                "taskSchedulingPolicy": policy,
                "enableAutoScale": autoscale,
            })
            if start_task is not None:
                doc["startTask"] = start_task
            pool = PoolRecord(doc=doc, sys={"seq": self.s.next_seq()})
            if autoscale:
                formula_text, interval = self._autoscale_settings(body, existing=None)
                formula = autoscaling.compile_or_400(formula_text)
                for forbidden in ("targetDedicatedNodes", "targetLowPriorityNodes"):
                    if body.get(forbidden) is not None:
                        raise errors.invalid_autoscaling_settings(
                            f"{forbidden} must not be specified when enableAutoScale is true.")
                doc.pop("resizeTimeout", None)
                doc.update({"autoScaleFormula": formula_text, "autoScaleEvaluationInterval": format_duration(interval),
                            "targetDedicatedNodes": 0, "targetLowPriorityNodes": 0})
                pool.formula = formula
                pool.touch(now)
                self._evaluate_and_apply(pool, now, interval)
            else:
                target_d = v.integer(body, "targetDedicatedNodes", default=0, minimum=0)
                target_l = v.integer(body, "targetLowPriorityNodes", default=0, minimum=0)
                timeout = v.duration(body, "resizeTimeout", minimum=MIN_RESIZE_TIMEOUT) or DEFAULT_RESIZE_TIMEOUT
                for name in ("autoScaleFormula", "autoScaleEvaluationInterval"):
                    if body.get(name) is not None:
                        raise errors.invalid_autoscaling_settings(f"{name} requires enableAutoScale to be true.")
                doc.update({"targetDedicatedNodes": target_d, "targetLowPriorityNodes": target_l,
                            "resizeTimeout": format_duration(timeout)})
                pool.touch(now)
                if target_d or target_l:
                    self._start_resize(pool, now, timeout, "requeue")
            self.s.pools[pool.key] = pool
            self.s.save_pool(pool)
            self.s.wake()
            return pool

    @staticmethod
    def _scheduling_policy(body: dict[str, Any]) -> dict[str, Any]:
        policy = v.obj(body, "taskSchedulingPolicy")
        if policy is None:
            return {"nodeFillType": "spread"}
        fill = v.enum(policy, "nodeFillType", NODE_FILL_TYPES, default="spread",
                      path="taskSchedulingPolicy.nodeFillType")
        return {**policy, "nodeFillType": fill}

    @staticmethod
    def _start_task(body: dict[str, Any]) -> dict[str, Any] | None:
        start = v.obj(body, "startTask")
        if start is None:
            return None
        v.string(start, "commandLine", required=True, path="startTask.commandLine")
        v.integer(start, "maxTaskRetryCount", minimum=-1, path="startTask.maxTaskRetryCount")
        v.boolean(start, "waitForSuccess", path="startTask.waitForSuccess")
        v.name_value_pairs(start, "environmentSettings")
        _check_resource_files(start, "startTask.resourceFiles")
        out = dict(start)
        out.setdefault("maxTaskRetryCount", 0)
        out.setdefault("waitForSuccess", True)  # SDK BatchStartTask.wait_for_success: "The default is true."
        return out

    def _autoscale_settings(self, body: dict[str, Any], existing: PoolRecord | None) -> tuple[str, timedelta]:
        formula = v.string(body, "autoScaleFormula")
        if formula is None:
            formula = existing.doc.get("autoScaleFormula") if existing else None
            if not formula:
                raise errors.missing_required_property("autoScaleFormula")
        minimum = self.s.config.autoscale_min_interval
        interval = v.duration(body, "autoScaleEvaluationInterval", minimum=minimum, maximum=autoscaling.MAX_INTERVAL)
        if interval is None:
            if existing is not None and existing.doc.get("autoScaleEvaluationInterval") and \
                    body.get("autoScaleEvaluationInterval") is None:
                interval = parse_duration(existing.doc["autoScaleEvaluationInterval"])
            else:
                interval = max(autoscaling.DEFAULT_INTERVAL, minimum)
        return formula, interval

    # --- read ---------------------------------------------------------------------------------------------
    def get(self, pool_id: str) -> PoolRecord:
        with self.s.lock:
            return self._pool(pool_id, allow_deleting=True)

    def list(self, filter_text: str | None, select: str | None, max_results: int, after: int | None
             ) -> odata.Page:
        predicate = odata.compile_filter(filter_text, odata.POOL_FILTERS)
        fields = odata.parse_select(select, POOL_PROPERTIES)
        with self.s.lock:
            rows = [(p.sys["seq"], p.doc) for p in self.s.pools.values()]
        rows.sort(key=lambda r: r[0])
        return odata.paginate(rows, predicate, after, max_results, fields)

    # --- delete / update ----------------------------------------------------------------------------------
    def delete(self, pool_id: str) -> None:
        now = self.s.now()
        with self.s.lock:
            pool = self._pool(pool_id)
            pool.transition("deleting", now, touch=False)
            pool.touch(now)
            self.s.save_pool(pool)
            self.s.wake()

    _PATCHABLE = ("displayName", "vmSize", "enableInterNodeCommunication", "startTask", "applicationPackageReferences",
                  "virtualMachineConfiguration", "taskSlotsPerNode", "taskSchedulingPolicy", "networkConfiguration",
                  "userAccounts", "mountConfiguration", "upgradePolicy", "metadata", "targetNodeCommunicationMode",
                  "resourceTags", "certificateReferences")
    # Changing these on a pool with nodes is refused by the service (SDK BatchPoolUpdateOptions docstrings).
    _NODELESS_ONLY = ("vmSize", "virtualMachineConfiguration", "taskSlotsPerNode", "taskSchedulingPolicy",
                      "networkConfiguration", "userAccounts", "mountConfiguration", "upgradePolicy",
                      "enableInterNodeCommunication", "displayName")

    def patch(self, pool_id: str, body: Any) -> PoolRecord:
        """PATCH /pools/{id}: replace only the properties present in the body."""
        body = v.body_object(body)
        changes: dict[str, Any] = {}
        for name, value in body.items():
            if name not in self._PATCHABLE:
                raise errors.invalid_property_value(name, "(value)", "This property cannot be updated.")
            if value is None:
                continue
            changes[name] = value
        if "startTask" in changes:
            changes["startTask"] = self._start_task({"startTask": changes["startTask"]})
        if "taskSlotsPerNode" in changes:
            v.integer(changes, "taskSlotsPerNode", minimum=1, maximum=MAX_TASK_SLOTS)
        if "taskSchedulingPolicy" in changes:
            changes["taskSchedulingPolicy"] = self._scheduling_policy(changes)
        if "metadata" in changes:
            v.name_value_pairs(changes, "metadata")
        now = self.s.now()
        with self.s.lock:
            pool = self._pool(pool_id)
            if pool.nodes and any(k in changes for k in self._NODELESS_ONLY):
                raise errors.operation_invalid_for_current_state(
                    "These properties can only be changed when the pool has no compute nodes.")
            pool.set(**changes)
            pool.touch(now)
            self.s.save_pool(pool)
            return pool

    def update_properties(self, pool_id: str, body: Any) -> PoolRecord:
        """POST /pools/{id}/updateproperties: replace startTask, metadata and package references wholesale."""
        body = v.body_object(body)
        start_task = self._start_task(body)
        metadata = v.name_value_pairs(body, "metadata")
        if metadata is None:
            raise errors.missing_required_property("metadata")
        packages = v.array(body, "applicationPackageReferences")
        if packages is None:
            raise errors.missing_required_property("applicationPackageReferences")
        now = self.s.now()
        with self.s.lock:
            pool = self._pool(pool_id)
            pool.set(startTask=start_task, metadata=metadata or None, applicationPackageReferences=packages or None,
                     targetNodeCommunicationMode=body.get("targetNodeCommunicationMode"))
            pool.touch(now)
            self.s.save_pool(pool)
            return pool

    # --- autoscale ----------------------------------------------------------------------------------------
    def enable_autoscale(self, pool_id: str, body: Any) -> PoolRecord:
        body = v.body_object(body if body is not None else {})
        now = self.s.now()
        with self.s.lock:
            pool = self._pool(pool_id)
            if not pool.doc.get("enableAutoScale") and pool.doc.get("allocationState") != "steady":
                # "You cannot enable automatic scaling on a Pool if a resize operation is in progress" (SDK doc).
                raise errors.pool_being_resized()
            last = pool.sys.get("lastEnableAutoScale")
            gap = self.s.config.enable_autoscale_min_gap
            if last is not None and gap > timedelta(0):
                if now - parse_iso(last) < gap:
                    raise errors.too_many_enable_autoscale_requests()
            formula_text, interval = self._autoscale_settings(body, existing=pool)
            formula = autoscaling.compile_or_400(formula_text)
            pool.formula = formula
            pool.set(enableAutoScale=True, autoScaleFormula=formula_text,
                     autoScaleEvaluationInterval=format_duration(interval), resizeTimeout=None)
            pool.sys["lastEnableAutoScale"] = iso(now)
            pool.touch(now)
            # A new interval restarts the evaluation schedule from this request (SDK enable_pool_auto_scale doc);
            # the service evaluates right away (recorded: autoScaleRun.timestamp == lastModified).
            self._evaluate_and_apply(pool, now, interval)
            self.s.save_pool(pool)
            self.s.wake()
            return pool

    def disable_autoscale(self, pool_id: str) -> PoolRecord:
        now = self.s.now()
        with self.s.lock:
            pool = self._pool(pool_id)
            pool.formula = None
            pool.set(enableAutoScale=False, autoScaleFormula=None, autoScaleEvaluationInterval=None,
                     resizeTimeout=pool.doc.get("resizeTimeout") or format_duration(DEFAULT_RESIZE_TIMEOUT))
            pool.sys.pop("nextEvaluation", None)
            pool.touch(now)
            self.s.save_pool(pool)
            self.s.wake()
            return pool

    def evaluate_autoscale(self, pool_id: str, body: Any) -> dict[str, Any]:
        """Evaluate a formula against the pool without applying it; errors land in the returned AutoScaleRun."""
        body = v.body_object(body)
        text = v.string(body, "autoScaleFormula", required=True)
        formula = autoscaling.compile_or_400(text)
        now = self.s.now()
        with self.s.lock:
            pool = self._pool(pool_id)
            if not pool.doc.get("enableAutoScale"):
                # Docs: the pool must have autoscale enabled; the status/code are not documented (unverified).
                raise errors.operation_invalid_for_current_state(
                    "Automatic scaling must be enabled on the pool to evaluate a formula.")
            inputs = self._inputs(pool, now)
        return autoscaling.run(formula, inputs).run

    def _inputs(self, pool: PoolRecord, now: datetime):
        nodes = list(pool.nodes.values())
        scalars = {
            "$CurrentDedicatedNodes": float(sum(1 for n in nodes if n.is_dedicated)),
            "$CurrentLowPriorityNodes": float(sum(1 for n in nodes if not n.is_dedicated)),
            "$TargetDedicatedNodes": float(pool.doc.get("targetDedicatedNodes") or 0),
            "$TargetLowPriorityNodes": float(pool.doc.get("targetLowPriorityNodes") or 0),
            "$PreemptedNodeCount": 0.0,
            "$SampleNodeCount": float(len(nodes)),
            "$UsableNodeCount": float(sum(1 for n in nodes if n.state in ("idle", "running"))),
            "$TaskSlotsPerNode": float(pool.doc.get("taskSlotsPerNode") or 1),
        }
        return autoscaling.inputs_for(pool, now, scalars, self.s.config)

    def _evaluate_and_apply(self, pool: PoolRecord, now: datetime, interval: timedelta) -> None:
        """One scheduled (or enable-time) evaluation: record autoScaleRun, apply targets on success."""
        if pool.formula is None:
            pool.formula = autoscaling.compile_or_400(pool.doc["autoScaleFormula"])
        result = autoscaling.run(pool.formula, self._inputs(pool, now))
        pool.set(autoScaleRun=result.run)
        pool.sys["nextEvaluation"] = iso(now + interval)
        pool.touch(now)
        outcome = result.outcome
        if outcome is None:
            return
        target_d = max(0, outcome.target_dedicated)
        target_l = max(0, outcome.target_low_priority)
        option = (outcome.node_deallocation_option or "requeue").lower()
        if option not in DEALLOCATION_OPTIONS:
            option = "requeue"
        if (target_d, target_l) != (pool.doc.get("targetDedicatedNodes"), pool.doc.get("targetLowPriorityNodes")) \
                or self._needs_allocation(pool, target_d, target_l):
            pool.set(targetDedicatedNodes=target_d, targetLowPriorityNodes=target_l)
            self._start_resize(pool, now, DEFAULT_RESIZE_TIMEOUT, option)

    @staticmethod
    def _needs_allocation(pool: PoolRecord, target_d: int, target_l: int) -> bool:
        live_d = sum(1 for n in pool.nodes.values() if n.is_dedicated and n.leaving is None)
        live_l = sum(1 for n in pool.nodes.values() if not n.is_dedicated and n.leaving is None)
        return (live_d, live_l) != (target_d, target_l)

    def evaluate_due(self, now: datetime) -> None:
        """Scheduler hook (lock held): run every autoscale evaluation whose time has come."""
        for pool in list(self.s.pools.values()):
            if not pool.doc.get("enableAutoScale") or pool.state != "active":
                continue
            due = pool.sys.get("nextEvaluation")
            if due is not None and parse_iso(due) > now:
                continue
            interval = parse_duration(pool.doc.get("autoScaleEvaluationInterval") or "PT15M")
            try:
                self._evaluate_and_apply(pool, now, interval)
            except errors.BatchError as exc:  # a stored formula that no longer compiles
                pool.set(autoScaleRun={"timestamp": iso(now), "error": {
                    "code": exc.code, "message": exc.message,
                    "values": [{"name": k, "value": val} for k, val in exc.values]}})
                pool.sys["nextEvaluation"] = iso(now + interval)
            self.s.save_pool(pool)

    # --- resize -------------------------------------------------------------------------------------------
    def _start_resize(self, pool: PoolRecord, now: datetime, timeout: timedelta, option: str) -> None:
        pool.sys["deallocationOption"] = option
        pool.sys["resizeDeadline"] = iso(now + timeout)
        pool.sys.pop("capReported", None)
        if pool.doc.get("allocationState") != "resizing":
            pool.set(allocationState="resizing", allocationStateTransitionTime=iso(now), resizeErrors=None)

    def resize(self, pool_id: str, body: Any) -> PoolRecord:
        body = v.body_object(body)
        target_d = v.integer(body, "targetDedicatedNodes", default=0, minimum=0)
        target_l = v.integer(body, "targetLowPriorityNodes", default=0, minimum=0)
        timeout = v.duration(body, "resizeTimeout", minimum=MIN_RESIZE_TIMEOUT) or DEFAULT_RESIZE_TIMEOUT
        option = v.enum(body, "nodeDeallocationOption", DEALLOCATION_OPTIONS, default="requeue")
        now = self.s.now()
        with self.s.lock:
            pool = self._pool(pool_id)
            if pool.doc.get("enableAutoScale"):
                # REST docs: "You cannot resize Pools which are configured for automatic scaling ... returns an
                # error 409". The error code is not documented; the generic 409 code is used (unverified).
                raise errors.operation_invalid_for_current_state(
                    "The pool has automatic scaling enabled; disable autoscale before resizing it.")
            if pool.doc.get("allocationState") != "steady":
                raise errors.pool_being_resized()
            pool.set(targetDedicatedNodes=target_d, targetLowPriorityNodes=target_l,
                     resizeTimeout=format_duration(timeout))
            self._start_resize(pool, now, timeout, option or "requeue")
            pool.touch(now)
            self.s.save_pool(pool)
            self.s.wake()
            return pool

    def stop_resize(self, pool_id: str) -> PoolRecord:
        now = self.s.now()
        with self.s.lock:
            pool = self._pool(pool_id)
            if pool.doc.get("allocationState") == "resizing":
                pool.set(allocationState="stopping", allocationStateTransitionTime=iso(now))
                pool.touch(now)
                self.s.save_pool(pool)
                self.s.wake()
            return pool

    def remove_nodes(self, pool_id: str, body: Any) -> PoolRecord:
        body = v.body_object(body)
        node_ids = v.array(body, "nodeList")
        if not node_ids:
            raise errors.missing_required_property("nodeList")
        if len(node_ids) > 100:
            raise errors.invalid_property_value("nodeList", len(node_ids), "At most 100 nodes can be removed at once.")
        timeout = v.duration(body, "resizeTimeout", minimum=MIN_RESIZE_TIMEOUT) or DEFAULT_RESIZE_TIMEOUT
        option = v.enum(body, "nodeDeallocationOption", DEALLOCATION_OPTIONS, default="requeue") or "requeue"
        now = self.s.now()
        with self.s.lock:
            pool = self._pool(pool_id)
            if pool.doc.get("allocationState") != "steady":
                raise errors.pool_being_resized()
            chosen: list[NodeRecord] = []
            for node_id in node_ids:
                node = pool.nodes.get(node_id) if isinstance(node_id, str) else None
                if node is None:
                    raise errors.invalid_property_value("nodeList", node_id, "The node does not exist in the pool.")
                chosen.append(node)
            for node in chosen:
                node.sys["leaving"] = option
                self.s.save_node(node)
            target_d = sum(1 for n in pool.nodes.values() if n.is_dedicated and n.leaving is None)
            target_l = sum(1 for n in pool.nodes.values() if not n.is_dedicated and n.leaving is None)
            pool.set(targetDedicatedNodes=target_d, targetLowPriorityNodes=target_l)
            self._start_resize(pool, now, timeout, option)
            pool.touch(now)
            self.s.save_pool(pool)
            self.s.wake()
            return pool

    # --- nodes --------------------------------------------------------------------------------------------
    def list_nodes(self, pool_id: str, filter_text: str | None, select: str | None, max_results: int,
                   after: int | None) -> odata.Page:
        predicate = odata.compile_filter(filter_text, odata.NODE_FILTERS)
        fields = odata.parse_select(select, NODE_PROPERTIES)
        with self.s.lock:
            pool = self._pool(pool_id, allow_deleting=True)
            rows = [(n.sys.get("seq", 0), n.doc) for n in pool.nodes.values()]
        rows.sort(key=lambda r: r[0])
        return odata.paginate(rows, predicate, after, max_results, fields)

    def get_node(self, pool_id: str, node_id: str) -> dict[str, Any]:
        with self.s.lock:
            pool = self._pool(pool_id, allow_deleting=True)
            node = pool.nodes.get(node_id)
            if node is None:
                raise errors.node_not_found()
            return node.doc

    def node_counts(self, filter_text: str | None, max_results: int, after: int | None) -> odata.Page:
        predicate = odata.compile_filter(filter_text, odata.NODE_COUNT_FILTERS)
        with self.s.lock:
            rows = [(p.sys["seq"], {"poolId": p.id, "dedicated": node_model.counts(p, True),
                                    "lowPriority": node_model.counts(p, False)})
                    for p in self.s.pools.values()]
        rows.sort(key=lambda r: r[0])
        return odata.paginate(rows, predicate, after, max_results, None)


def _check_resource_files(container: dict[str, Any], path: str) -> None:
    files = v.array(container, "resourceFiles", path=path)
    for i, rf in enumerate(files or []):
        if not isinstance(rf, dict):
            raise errors.invalid_property_value(f"{path}[{i}]", "(value)", "Each resource file must be an object.")
        problem = resource_file_problem(rf)
        if problem:
            raise errors.invalid_property_value(f"{path}[{i}]", "(resource file)", problem)
