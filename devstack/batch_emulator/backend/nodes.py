"""Compute node records: creation, the service's node-count buckets, and which nodes a shrink removes first."""
from __future__ import annotations

import hashlib
import itertools
import secrets
from datetime import datetime
from typing import Any

from ..timeutil import iso
from .records import NodeRecord, PoolRecord

NODE_AGENT_VERSION = "1.11.20"  # shown as nodeAgentInfo.version; any plausible value
COUNT_BUCKETS = ("creating", "idle", "offline", "preempted", "rebooting", "reimaging", "running", "starting",
                 "startTaskFailed", "leavingPool", "unknown", "unusable", "waitingForStartTask", "deallocated",
                 "deallocating", "upgradingOS")
# wire node state -> node-count bucket name
_BUCKET_OF = {b.lower(): b for b in COUNT_BUCKETS}
# A shrink removes the least useful nodes first (the service "chooses which nodes to remove").
_REMOVAL_PREFERENCE = {"creating": 0, "starting": 1, "starttaskfailed": 2, "unusable": 2, "waitingforstarttask": 3,
                       "idle": 4, "running": 5}
_ip_counter = itertools.count(4)


def new_node(pool: PoolRecord, dedicated: bool, account_url: str, now: datetime) -> NodeRecord:
    # Real ids look like tvmps_<64 hex>_d (dedicated) / _p (low priority).
    digest = hashlib.sha256(secrets.token_bytes(16)).hexdigest()
    node_id = f"tvmps_{digest}_{'d' if dedicated else 'p'}"
    n = next(_ip_counter)
    image = (pool.doc.get("virtualMachineConfiguration") or {}).get("imageReference")
    doc: dict[str, Any] = {
        "id": node_id,
        "url": f"{account_url}/pools/{pool.id}/nodes/{node_id}",
        "state": "creating",
        "schedulingState": "enabled",
        "stateTransitionTime": iso(now),
        "allocationTime": iso(now),
        "ipAddress": f"10.0.{(n // 250) % 250}.{n % 250 + 4}",
        "affinityId": f"TVM:{node_id}",
        "vmSize": pool.doc.get("vmSize"),
        "totalTasksRun": 0,
        "totalTasksSucceeded": 0,
        "runningTasksCount": 0,
        "runningTaskSlotsCount": 0,
        "isDedicated": dedicated,
        "nodeAgentInfo": {"version": NODE_AGENT_VERSION, "lastUpdateTime": iso(now)},
    }
    if image:
        doc["virtualMachineInfo"] = {"imageReference": image}
    if pool.doc.get("startTask"):
        doc["startTask"] = pool.doc["startTask"]
    return NodeRecord(pool_key=pool.key, doc=doc, sys={"running": {}})


def bucket(node: NodeRecord) -> str:
    return _BUCKET_OF.get(node.state.lower(), "unknown")


def counts(pool: PoolRecord, dedicated: bool) -> dict[str, int]:
    out = {b: 0 for b in COUNT_BUCKETS}
    total = 0
    for node in pool.nodes.values():
        if node.is_dedicated == dedicated:
            out[bucket(node)] += 1
            total += 1
    out["total"] = total
    return out


def removal_order(nodes: list[NodeRecord]) -> list[NodeRecord]:
    return sorted(nodes, key=lambda n: (_REMOVAL_PREFERENCE.get(n.state, 6), n.used_slots))


def is_schedulable(node: NodeRecord) -> bool:
    return node.state in ("idle", "running") and node.leaving is None and \
        node.doc.get("schedulingState", "enabled") == "enabled"
