"""What the pool's errors mean, in words, and what to do: for `status pool` (text and --json).

A pool that cannot get nodes shows it only as a code on the pool (its last resize error) or as node counts in
bad states; every upload then stays queued. Batch's resize error codes are those of its PoolResizeErrorCodes
(Microsoft.Azure.Batch.Common); the quota commands are docs/deploy.md's ("Batch quotas").
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_QUOTA_HELP = ("request more in the portal (Batch account > Quotas > Request quota increase) or lower POOL_MAX_NODES "
               "(azd env set POOL_MAX_NODES <n>; azd provision); infra/scripts/preflight.sh shows the numbers")
_RESIZE: dict[str, str] = {
    "AccountCoreQuotaReached": "the Batch account has no dedicated cores left for {vm_size}'s VM family, so the "
                               "pool cannot grow and uploads stay queued: " + _QUOTA_HELP,
    "AccountLowPriorityCoreQuotaReached": "the Batch account has no low-priority (Spot) cores left (new accounts "
                                          "often have none), so the pool cannot grow and uploads stay queued: "
                                          + _QUOTA_HELP + ", or use dedicated nodes (azd env set USE_SPOT false)",
    "AccountSpotCoreQuotaReached": "the Batch account has no Spot cores left, so the pool cannot grow and uploads "
                                   "stay queued: " + _QUOTA_HELP + ", or use dedicated nodes (azd env set USE_SPOT false)",
    "AllocationFailed": "Azure could not allocate {vm_size} nodes in this region right now (capacity, or the size "
                        "is restricted for the subscription); the timer keeps asking. If it persists, pick another "
                        "size (azd env set POOL_VM_SIZE ...) or region",
    "AllocationTimedOut": "Azure did not allocate the nodes within the resize timeout; the timer asks again. "
                          "If it persists: capacity or quota, see the other errors and the Batch account's Quotas",
    "IncompatibleVMSize": "{vm_size} does not fit the pool's image or configuration: pick another size "
                          "(az batch location list-skus --location <region> -o table)",
    "FailedIdentityOperation": "Batch could not attach the pool's managed identity; re-run `azd provision` (the "
                               "deployer needs rights to assign the identity)",
    "DependentResourceNotFound": "something the pool refers to (identity, image, subnet) no longer exists: "
                                 "re-run `azd provision`",
    "ResizeStopped": "a resize was stopped (the timer does this when it parks the pool): nothing to do",
}
_NODE_STATES: dict[str, str] = {
    "start_task_failed": "{n} {kind} node(s) failed their start task (ffmpeg install or the metadata-endpoint "
                         "firewall rule); tasks never run there. See the node's startup/stderr.txt (az batch node "
                         "file list) and FFMPEG_BINARY_URL/FFMPEG_SHA256",
    "unusable": "{n} {kind} node(s) are unusable (Batch could not prepare them); Batch replaces them, "
                "or remove them with `az batch node delete`",
    "preempted": "{n} {kind} Spot node(s) were preempted; their tasks are requeued",
}


def explain(pool: Mapping[str, Any] | None, node_counts: Mapping[str, Mapping[str, int]] | None) -> list[str]:
    """Plain sentences for what is wrong with the pool (empty: nothing known to be wrong)."""
    if pool is None:
        return []
    vm_size = pool.get("vm_size") or "the VM size"
    lines = []
    for error in pool.get("resize_errors") or []:
        code, _, message = str(error).partition(": ")
        text = _RESIZE.get(code)
        lines.append(f"{code}: " + (text.format(vm_size=vm_size) if text else f"the pool could not resize ({message})"))
    for kind, counts in (node_counts or {}).items():
        for state, template in _NODE_STATES.items():
            if counts.get(state):
                lines.append(template.format(n=counts[state], kind=kind.replace("_", "-")))
    return lines
