"""The app's pool (shared/pool_spec.py) as the ARM pool infra/modules/batch.bicep declares: one source, two renderings.

Why Bicep declares the pool: the Batch data plane the app uses cannot give a pool a managed identity
(azure-batch 15.1.0: BatchPool.identity is read-only); only the management plane can. Declaring it in the
template creates it with its identity before the app is deployed, and the deployer needs nothing but azd
(no Python, no SDK). The app then finds it (PoolExists is success).

What keeps the two from drifting: the parts of the pool that are code, not settings - the start task's
command line, the autoscale formula's text, the fill type, the image -> node agent table - are written
from pool_spec.py into infra/pool.json, which the Bicep module reads with loadJsonContent. Settings
(VM size, node cap, slots, Spot, ffmpeg pin, identity) are Bicep parameters, the same ones that become the
app's settings. tests/infra/test_pool.py evaluates the Bicep pool for several parameter sets and requires
it to equal `arm_pool_body` below (pool_spec.build_pool rendered for ARM), and infra/pool.json to equal
`generate()`:

    .venv/bin/python -m infra.batch_pool > infra/pool.json     # after changing shared/pool_spec.py

Dev-time only: nothing here runs on the deployer's machine.
"""
from __future__ import annotations

import json
import sys
from typing import Any

from shared import pool_spec
from shared.settings import _KNOWN_NODE_AGENTS as KNOWN_NODE_AGENTS  # the image -> agent table Settings derives from
from shared.settings import NodePriority, Settings

# Data-plane enum values are camelCase; the management plane documents PascalCase.
_ARM_ENUMS = {"pool": "Pool", "task": "Task", "admin": "Admin", "nonadmin": "NonAdmin",
              "pack": "Pack", "spread": "Spread"}
# Placeholders in the formula templates of infra/pool.json; Bicep replace()s them with its parameters.
MAX_NODES = "{{maxNodes}}"
SLOTS_PER_NODE = "{{slotsPerNode}}"
# Values no real formula contains, so each occurrence in the rendered text is the parameter's.
_SENTINEL_MAX_NODES = 98765431
_SENTINEL_SLOTS = 98765432


class UnmappedPoolProperty(ValueError):
    """The app's pool uses a property this renderer does not translate; extend it, don't drop it."""


def _enum(value: str) -> str:
    return _ARM_ENUMS.get(value.lower(), value)


def _take(source: dict[str, Any], known: set[str], where: str) -> dict[str, Any]:
    unknown = set(source) - known
    if unknown:
        raise UnmappedPoolProperty(f"{where}: no ARM mapping for {sorted(unknown)}")
    return source


def _start_task(st: dict[str, Any]) -> dict[str, Any]:
    _take(st, {"commandLine", "resourceFiles", "userIdentity", "maxTaskRetryCount", "waitForSuccess",
               "environmentSettings"}, "startTask")
    out: dict[str, Any] = {"commandLine": st["commandLine"]}
    identity = st.get("userIdentity")
    if identity:
        _take(identity, {"autoUser"}, "startTask.userIdentity")
        auto = _take(identity["autoUser"], {"scope", "elevationLevel"}, "startTask.userIdentity.autoUser")
        out["userIdentity"] = {"autoUser": {k: _enum(v) for k, v in auto.items()}}
    for key in ("maxTaskRetryCount", "waitForSuccess"):
        if key in st:
            out[key] = st[key]
    for rf in st.get("resourceFiles") or []:
        _take(rf, {"httpUrl", "filePath", "fileMode", "identityReference"}, "startTask.resourceFiles[]")
    if st.get("resourceFiles"):
        out["resourceFiles"] = [dict(rf) for rf in st["resourceFiles"]]  # same names on both planes
    if st.get("environmentSettings"):
        out["environmentSettings"] = st["environmentSettings"]
    return out


def arm_pool_body(settings: Settings) -> dict[str, Any]:
    """The ARM resource body (api-version 2024-07-01) of the pool the app would create: identity + properties.

    ARM-only parts the data plane has no say in (the network rule denying inbound SSH) are not here; the
    Bicep module adds them and tests/infra/test_pool.py checks them on their own."""
    pool = pool_spec.build_pool(settings).as_dict()
    _take(pool, {"id", "displayName", "vmSize", "virtualMachineConfiguration", "enableAutoScale",
                 "autoScaleFormula", "autoScaleEvaluationInterval", "taskSlotsPerNode", "taskSchedulingPolicy",
                 "startTask"}, "pool")
    vm = _take(pool["virtualMachineConfiguration"], {"imageReference", "nodeAgentSKUId"},
               "virtualMachineConfiguration")
    if not pool.get("enableAutoScale"):
        raise UnmappedPoolProperty("pool: the ARM rendering expects an autoscaled pool")
    minutes = settings.autoscale_interval_minutes
    properties: dict[str, Any] = {
        "displayName": pool["displayName"],
        "vmSize": pool["vmSize"],
        "deploymentConfiguration": {"virtualMachineConfiguration": {
            "imageReference": vm["imageReference"],
            "nodeAgentSkuId": vm["nodeAgentSKUId"],
        }},
        "scaleSettings": {"autoScale": {"formula": pool["autoScaleFormula"], "evaluationInterval": f"PT{minutes}M"}},
        "taskSlotsPerNode": pool["taskSlotsPerNode"],
        "taskSchedulingPolicy": {"nodeFillType": _enum(pool["taskSchedulingPolicy"]["nodeFillType"])},
        "startTask": _start_task(pool["startTask"]),
    }
    identity = settings.pool_identity_resource_id
    return {"identity": {"type": "UserAssigned", "userAssignedIdentities": {identity: {}}} if identity
            else {"type": "None"}, "properties": properties}


def _formula_template(priority: NodePriority) -> str:
    text = pool_spec.autoscale_formula(_SENTINEL_SLOTS, _SENTINEL_MAX_NODES, priority)
    for sentinel in (_SENTINEL_SLOTS, _SENTINEL_MAX_NODES):
        if str(sentinel) not in text:
            raise UnmappedPoolProperty(f"autoscale formula: the parameter {sentinel} does not appear verbatim")
    return text.replace(str(_SENTINEL_SLOTS), SLOTS_PER_NODE).replace(str(_SENTINEL_MAX_NODES), MAX_NODES)


def _sample_settings(**extra: str) -> Settings:
    """Settings that only serve to render the code-defined parts (nothing of them reaches pool.json)."""
    return Settings.from_env({"MEDIA_STORAGE": "UseDevelopmentStorage=true", "BATCH_ACCOUNT_URL": "https://b.example",
                              "BATCH_ACCOUNT_NAME": "b", "BATCH_ACCOUNT_KEY": "a2V5", **extra})


def generate() -> dict[str, Any]:
    """The code-defined part of the pool, as infra/pool.json holds it."""
    plain = pool_spec.build_pool(_sample_settings()).as_dict()
    pinned = pool_spec.build_pool(_sample_settings(FFMPEG_BINARY_URL="https://x.example/ffmpeg",
                                                   FFMPEG_SHA256="0" * 64)).as_dict()["startTask"]
    start = _start_task(plain["startTask"])
    if set(start) != {"commandLine", "userIdentity", "maxTaskRetryCount", "waitForSuccess"}:
        raise UnmappedPoolProperty(f"startTask without a pinned ffmpeg: unexpected {sorted(start)}")
    if pinned["commandLine"] != start["commandLine"]:
        raise UnmappedPoolProperty("startTask: the command line must not depend on settings")
    (resource_file,) = pinned["resourceFiles"]
    (sha_variable,) = pinned["environmentSettings"]
    return {
        "$comment": "Generated from shared/pool_spec.py by `python -m infra.batch_pool > infra/pool.json`; "
                    "read by infra/modules/batch.bicep. tests/infra/test_pool.py fails when it is stale.",
        "displayName": plain["displayName"],
        "nodeFillType": _enum(plain["taskSchedulingPolicy"]["nodeFillType"]),
        "autoScaleFormula": {"dedicated": _formula_template(NodePriority.DEDICATED),
                             "spot": _formula_template(NodePriority.SPOT)},
        "startTask": start,
        "ffmpegResourceFile": {k: v for k, v in resource_file.items() if k not in ("httpUrl", "identityReference")},
        "ffmpegShaVariable": sha_variable["name"],
        "nodeAgentSkus": {f"{publisher}:{offer}": agent for (publisher, offer), agent in KNOWN_NODE_AGENTS.items()},
    }


def main() -> int:
    json.dump(generate(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
