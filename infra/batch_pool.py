"""Render the app's own pool (shared/pool_spec.build_pool) as an ARM pool with the pool identity.

Why: the Batch data plane, which the app uses to create its pool lazily, cannot attach a managed
identity to a pool (azure-batch 15.1.0: BatchPool.identity is read-only, BatchPoolCreateOptions
has no identity). Only the management plane (Microsoft.Batch/batchAccounts/pools) can. So the
post-deploy hook creates the pool through ARM *before* uploads are wired up, from the very spec
the app would have used — one source for the pool's shape — and the app then finds it (PoolExists
is success). If the app created the pool first, the hook only PATCHes the identity in; Batch gives
it to nodes allocated after that (the pool parks at zero nodes when idle, so all later nodes).

    python -m infra.batch_pool body  < app-settings.json   # PUT body for a new pool
    python -m infra.batch_pool identity --identity <resource id>   # PATCH body for an existing pool
app-settings.json is `az functionapp config appsettings list -o json` of the deployed app, so
the pool is built from exactly the settings the app runs with.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

from shared.pool_spec import build_pool
from shared.settings import Settings

# Data-plane enum values are camelCase; the management plane documents PascalCase.
_ARM_ENUMS = {"pool": "Pool", "task": "Task", "admin": "Admin", "nonadmin": "NonAdmin",
              "pack": "Pack", "spread": "Spread"}


class UnmappedPoolProperty(ValueError):
    """The app's pool uses a property this renderer does not translate; extend it, don't drop it."""


def _enum(value: str) -> str:
    return _ARM_ENUMS.get(value.lower(), value)


def _take(source: dict[str, Any], known: set[str], where: str) -> dict[str, Any]:
    unknown = set(source) - known
    if unknown:
        raise UnmappedPoolProperty(f"{where}: no ARM mapping for {sorted(unknown)}")
    return source


def _resource_file(rf: dict[str, Any]) -> dict[str, Any]:
    _take(rf, {"httpUrl", "storageContainerUrl", "autoStorageContainerName", "blobPrefix", "filePath",
               "fileMode", "identityReference"}, "startTask.resourceFiles[]")
    return dict(rf)  # same names and shapes on both planes


def _start_task(st: dict[str, Any]) -> dict[str, Any]:
    _take(st, {"commandLine", "resourceFiles", "userIdentity", "maxTaskRetryCount", "waitForSuccess",
               "environmentSettings"}, "startTask")
    out: dict[str, Any] = {"commandLine": st["commandLine"]}
    if st.get("resourceFiles"):
        out["resourceFiles"] = [_resource_file(rf) for rf in st["resourceFiles"]]
    if st.get("environmentSettings"):
        out["environmentSettings"] = st["environmentSettings"]
    identity = st.get("userIdentity")
    if identity:
        _take(identity, {"autoUser", "username"}, "startTask.userIdentity")
        if "autoUser" in identity:
            auto = _take(identity["autoUser"], {"scope", "elevationLevel"}, "startTask.userIdentity.autoUser")
            out["userIdentity"] = {"autoUser": {k: _enum(v) for k, v in auto.items()}}
        else:
            out["userIdentity"] = {"userName": identity["username"]}
    for key in ("maxTaskRetryCount", "waitForSuccess"):
        if key in st:
            out[key] = st[key]
    return out


def arm_pool_body(settings: Settings, identity_resource_id: str) -> dict[str, Any]:
    """The ARM PUT body (api-version 2024-07-01) for the pool the app would create."""
    pool = build_pool(settings).as_dict()
    _take(pool, {"id", "displayName", "vmSize", "virtualMachineConfiguration", "enableAutoScale",
                 "autoScaleFormula", "autoScaleEvaluationInterval", "targetDedicatedNodes",
                 "targetLowPriorityNodes", "taskSlotsPerNode", "taskSchedulingPolicy", "startTask",
                 "metadata"}, "pool")
    vm = _take(pool["virtualMachineConfiguration"], {"imageReference", "nodeAgentSKUId"},
               "virtualMachineConfiguration")
    if pool.get("enableAutoScale"):
        scale = {"autoScale": {"formula": pool["autoScaleFormula"],
                               "evaluationInterval": pool.get("autoScaleEvaluationInterval", "PT5M")}}
    else:
        scale = {"fixedScale": {"targetDedicatedNodes": pool.get("targetDedicatedNodes", 0),
                                "targetLowPriorityNodes": pool.get("targetLowPriorityNodes", 0)}}
    properties: dict[str, Any] = {
        "displayName": pool.get("displayName", pool["id"]),
        "vmSize": pool["vmSize"],
        "deploymentConfiguration": {"virtualMachineConfiguration": {
            "imageReference": vm["imageReference"],
            "nodeAgentSkuId": vm["nodeAgentSKUId"],
        }},
        "scaleSettings": scale,
    }
    if "taskSlotsPerNode" in pool:
        properties["taskSlotsPerNode"] = pool["taskSlotsPerNode"]
    if "taskSchedulingPolicy" in pool:
        policy = _take(pool["taskSchedulingPolicy"], {"nodeFillType"}, "taskSchedulingPolicy")
        properties["taskSchedulingPolicy"] = {"nodeFillType": _enum(policy["nodeFillType"])}
    if "startTask" in pool:
        properties["startTask"] = _start_task(pool["startTask"])
    if pool.get("metadata"):
        properties["metadata"] = pool["metadata"]
    return {"identity": identity_patch(identity_resource_id)["identity"], "properties": properties}


def identity_patch(identity_resource_id: str) -> dict[str, Any]:
    if not identity_resource_id.lower().startswith("/subscriptions/"):
        raise ValueError("the pool identity must be an ARM resource id (/subscriptions/...)")
    return {"identity": {"type": "UserAssigned", "userAssignedIdentities": {identity_resource_id: {}}}}


def settings_from_app_settings(items: list[Mapping[str, Any]]) -> Settings:
    """Settings exactly as the deployed app reads them (`az functionapp config appsettings list`)."""
    return Settings.from_env({str(i["name"]): str(i.get("value") or "") for i in items})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ARM bodies for the Batch pool with its identity")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("body", help="PUT body; app settings JSON on stdin")
    patch = sub.add_parser("identity", help="PATCH body that adds the pool identity")
    patch.add_argument("--identity", required=True)
    args = parser.parse_args(argv)
    if args.command == "identity":
        json.dump(identity_patch(args.identity), sys.stdout)
        return 0
    settings = settings_from_app_settings(json.load(sys.stdin))
    if not settings.pool_identity_resource_id:
        raise SystemExit("POOL_IDENTITY_RESOURCE_ID is not set in the app settings: nothing to attach")
    json.dump(arm_pool_body(settings, settings.pool_identity_resource_id), sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
