"""The pool Bicep declares is the pool the app would create: one source (shared/pool_spec.py), no drift.

infra/modules/pool.bicep is evaluated (tests/infra/bicep.py's Evaluator: main.bicep's parameters -> the module's
parameters -> the resource body, infra/pool.json loaded as Bicep's loadJsonContent would) for several parameter
sets, and must equal infra/batch_pool.arm_pool_body of the Settings the same template gives the app - which
renders pool_spec.build_pool for ARM. infra/pool.json must equal what pool_spec generates now."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from infra.batch_pool import arm_pool_body, generate
from shared.settings import Settings
from tests.infra.bicep import INFRA, MAIN, Evaluator, parse
from tests.infra.test_app_settings import CHINA_OUTPUTS, PUBLIC_OUTPUTS, template_settings

POOL = INFRA / "modules" / "pool.bicep"
SHA = "ab" * 32
PARAMETER_SETS = {
    "defaults": {},
    "spot, bigger, slower autoscale": {"useSpot": True, "poolMaxNodes": 12, "poolVmSize": "Standard_D4ds_v5",
                                       "poolTaskSlotsPerNode": 4, "poolAutoscaleIntervalMinutes": 7},
    "pinned ffmpeg read with the pool identity": {"ffmpegBinaryUrl": "https://tools.blob.core.windows.net/bin/ffmpeg",
                                                  "ffmpegSha256": SHA},
    "SAS mode, unpinned binary": {"nodeStorageAccess": "userDelegationSas",
                                  "ffmpegBinaryUrl": "https://tools.example/ffmpeg?sv=1&sig=x"},
    "jammy image, derived agent": {"poolImage": "Canonical:0001-com-ubuntu-server-jammy:22_04-lts:latest"},
    "explicit agent": {"poolNodeAgentSkuId": "batch.node.ubuntu 24.04"},
}


def bicep_pool(parameters: dict[str, Any], outputs=PUBLIC_OUTPUTS, pool_file: Path = POOL) -> dict[str, Any]:
    main = Evaluator(parse(MAIN), outputs, parameters=parameters)
    module = parse(MAIN)["modules"]["pool"]["config"]
    module_params = {name: main.eval(value) for name, value in module["params"].items()}
    template = parse(pool_file)
    evaluator = Evaluator(template, {}, parameters=module_params, path=pool_file)
    config = template["resources"]["pool"]["config"]
    return {key: evaluator.eval(config[key]) for key in ("name", "identity", "properties")}


@pytest.mark.parametrize("parameters", PARAMETER_SETS.values(), ids=PARAMETER_SETS.keys())
def test_bicep_pool_is_the_apps_pool(parameters: dict[str, Any]):
    settings = Settings.from_env(template_settings(parameters=parameters))
    expected = arm_pool_body(settings)
    declared = bicep_pool(parameters)
    assert declared["name"] == settings.pool_id
    assert declared["identity"] == expected["identity"]
    properties = dict(declared["properties"])
    properties.pop("networkConfiguration")  # ARM only: checked below
    assert properties == expected["properties"]


def test_china_cloud_pool_is_the_apps_pool_too():
    from tests.infra.bicep import CHINA_CLOUD_ENVIRONMENT
    settings = Settings.from_env(template_settings(CHINA_OUTPUTS, environment=dict(CHINA_CLOUD_ENVIRONMENT)))
    declared = bicep_pool({}, CHINA_OUTPUTS)
    declared["properties"].pop("networkConfiguration")
    assert declared["properties"] == arm_pool_body(settings)["properties"]


def test_the_comparison_can_fail(tmp_path: Path):
    # A hand edit of pool.json (here: the formula's node cap left constant) is caught.
    (tmp_path / "modules").mkdir()
    shutil.copy(POOL, tmp_path / "modules" / "pool.bicep")
    spec = json.loads((INFRA / "pool.json").read_text())
    spec["autoScaleFormula"]["dedicated"] = spec["autoScaleFormula"]["dedicated"].replace("{{maxNodes}}", "4")
    (tmp_path / "pool.json").write_text(json.dumps(spec))
    params = {"poolMaxNodes": 9}
    tampered = bicep_pool(params, pool_file=tmp_path / "modules" / "pool.bicep")["properties"]
    expected = arm_pool_body(Settings.from_env(template_settings(parameters=params)))["properties"]
    assert tampered["scaleSettings"] != expected["scaleSettings"]
    assert bicep_pool(params)["properties"]["scaleSettings"] == expected["scaleSettings"]


def test_pool_json_is_generated_from_pool_spec():
    assert json.loads((INFRA / "pool.json").read_text()) == generate(), \
        "shared/pool_spec.py changed: run .venv/bin/python -m infra.batch_pool > infra/pool.json"


def test_nothing_reaches_a_node_from_outside():
    network = bicep_pool({})["properties"]["networkConfiguration"]
    (nat,) = network["endpointConfiguration"]["inboundNatPools"]
    assert nat["backendPort"] == 22 and nat["protocol"] == "TCP"
    assert nat["networkSecurityGroupRules"] == [{"priority": 150, "access": "Deny", "sourceAddressPrefix": "*"}]
    # ports 50000-55000 are Batch's own
    assert not (50000 <= nat["frontendPortRangeStart"] <= 55000 or 50000 <= nat["frontendPortRangeEnd"] <= 55000)


def test_pool_identity_is_attached_by_the_template_and_roles_come_first():
    assert bicep_pool({})["identity"] == {
        "type": "UserAssigned", "userAssignedIdentities": {PUBLIC_OUTPUTS["poolIdentity"]["id"]: {}}}
    assert bicep_pool({"nodeStorageAccess": "userDelegationSas"})["identity"] == {"type": "None"}
    module = parse(MAIN)["modules"]["pool"]["config"]
    assert "roles" in json.dumps(module["dependsOn"])
