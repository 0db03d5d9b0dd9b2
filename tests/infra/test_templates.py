"""The template files parse, and hang together the way the Bicep compiler would insist on.

No Bicep compiler here (it is a .NET binary fetched from GitHub), so: two independent Bicep
parsers (pycep-parser, tree-sitter-bicep) for syntax, then structural checks in Python for what
the compiler would reject semantically (unknown decorators, module parameters that don't exist
or are missing, references to module outputs that don't exist), and the security settings the
design depends on."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml
from pycep import BicepParser

from tests.infra.bicep import INFRA, MAIN, bicep_files, module_path, parse, tree_sitter_errors

REPO = INFRA.parent
# Bicep's parameter/variable/output decorators (learn.microsoft.com/azure/azure-resource-manager/bicep/parameters#decorators)
KNOWN_DECORATORS = {"allowed", "description", "metadata", "min_length", "max_length", "min_value",
                    "max_value", "secure", "export", "sealed", "discriminator", "batch_size"}
API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(INFRA).as_posix())
def test_bicep_file_parses_with_both_grammars(path: Path):
    assert tree_sitter_errors(path) == []
    template = parse(path)
    assert template["resources"] or template["modules"]


def test_a_broken_template_is_reported_by_both_parsers(tmp_path: Path):
    broken = tmp_path / "broken.bicep"
    broken.write_text("param name string\nresource s 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n"
                      "  name: name\n  properties: {\n    foo:\n  }\n")
    assert tree_sitter_errors(broken)
    with pytest.raises(Exception):
        BicepParser().parse(text=broken.read_text())


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(INFRA).as_posix())
def test_decorators_and_api_versions_are_real(path: Path):
    template = parse(path)
    for section in ("parameters", "variables", "outputs"):
        for name, item in template.get(section, {}).items():
            for decorator in item.get("decorators", []):
                assert decorator["type"] in KNOWN_DECORATORS, f"{path.name}: {name}: @{decorator['type']}"
    for name, resource in template["resources"].items():
        assert API_VERSION.match(resource["api_version"]), f"{path.name}: {name}"


def _module_refs(text: str, module: str) -> set[str]:
    return set(re.findall(rf"\b{module}\.outputs\.(\w+)", text))


@pytest.mark.parametrize("main", [MAIN], ids=["main.bicep"])
def test_modules_get_exactly_their_parameters_and_expose_the_outputs_used(main: Path):
    template = parse(main)
    text = main.read_text()
    assert template["modules"], "main.bicep declares no modules"
    for symbol, module in template["modules"].items():
        target = module_path(main, module)
        assert target.exists(), f"module {symbol}: {target} missing"
        child = parse(target)
        declared = child["parameters"]
        config = module["config"]
        config = config.get("config", config)  # conditional modules nest their body
        passed = set(config.get("params", {}))
        assert passed <= set(declared), f"module {symbol}: unknown params {sorted(passed - set(declared))}"
        required = {n for n, p in declared.items() if "default" not in p}
        assert required <= passed, f"module {symbol}: missing params {sorted(required - passed)}"
        used = _module_refs(text, symbol)
        assert used <= set(child["outputs"]), f"module {symbol}: no outputs {sorted(used - set(child['outputs']))}"


def test_parameters_file_matches_main_parameters():
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = parse(MAIN)["parameters"]
    assert set(params) <= set(declared), sorted(set(params) - set(declared))
    required = {n for n, p in declared.items() if "default" not in p}
    assert required <= set(params), sorted(required - set(params))


def test_azure_yaml_deploys_the_repo_root_as_a_function_and_runs_the_hooks_in_sh():
    config = yaml.safe_load((REPO / "azure.yaml").read_text())
    assert config["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    assert config["services"]["app"] == {"project": ".", "language": "python", "host": "function"}
    expected = {"preprovision": "preflight.sh", "postprovision": "preflight.sh", "postdeploy": "post-deploy.sh"}
    assert set(config["hooks"]) == set(expected)
    for event, script_name in expected.items():
        for os_name in ("posix", "windows"):
            hook = config["hooks"][event][os_name]
            script = REPO / hook["run"]
            assert script.name == script_name and hook["shell"] == "sh", (event, os_name)
            assert script.exists() and os.access(script, os.X_OK), hook["run"]
            assert hook["continueOnError"] is False


def _resource(path: str, resource_type: str) -> dict:
    matches = [r for r in parse(INFRA / path)["resources"].values() if r["type"] == resource_type]
    assert len(matches) == 1, f"{path}: {resource_type}"
    body = matches[0]["config"]
    return body.get("config", body)


def test_storage_refuses_shared_keys_and_public_blobs():
    props = _resource("modules/storage.bicep", "Microsoft.Storage/storageAccounts")["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"


def test_blob_soft_delete_and_versioning_are_on():
    props = _resource("modules/storage.bicep", "Microsoft.Storage/storageAccounts/blobServices")["properties"]
    assert props["isVersioningEnabled"] is True
    for policy in ("deleteRetentionPolicy", "containerDeleteRetentionPolicy"):
        assert props[policy]["enabled"] is True and props[policy]["days"] >= 7


def test_basic_publishing_credentials_are_disabled():
    text = (INFRA / "modules/functionapp.bicep").read_text()
    policies = re.findall(r"'Microsoft\.Web/sites/basicPublishingCredentialsPolicies@[^']+' = \{\s*parent: site\s*"
                          r"name: '(\w+)'\s*properties: \{\s*allow: (\w+)", text)
    assert sorted(policies) == [("ftp", "false"), ("scm", "false")]


def test_batch_account_is_batch_service_mode_with_entra_id_only():
    props = _resource("modules/batch.bicep", "Microsoft.Batch/batchAccounts")["properties"]
    assert props["poolAllocationMode"] == "BatchService"
    assert props["allowedAuthenticationModes"] == ["AAD"]


def test_application_insights_takes_only_entra_id_telemetry():
    props = _resource("modules/monitoring.bicep", "Microsoft.Insights/components")["properties"]
    assert props["DisableLocalAuth"] is True


def test_function_app_is_flex_consumption_python_311_deploying_with_its_identity():
    template = parse(INFRA / "modules/functionapp.bicep")
    text = (INFRA / "modules/functionapp.bicep").read_text()
    assert template["variables"]["pythonVersion"]["value"] == "3.11"
    assert "tier: 'FlexConsumption'" in text and "name: 'FC1'" in text
    site = _resource("modules/functionapp.bicep", "Microsoft.Web/sites")
    assert site["identity"]["type"] == "UserAssigned"
    # the Flex deployment package is read with the app's user-assigned identity, not a key
    flex = site["properties"]["functionAppConfig"]["operator"]["operands"]["true_value"]
    auth = flex["deployment"]["storage"]["authentication"]
    assert auth == {"type": "UserAssignedIdentity", "userAssignedIdentityResourceId": "identityId"}
    assert flex["runtime"] == {"name": "python", "version": "pythonVersion"}
    # Flex Consumption rejects these; they are only added for the Dedicated fallback
    dedicated_only = set(template["variables"]["dedicatedOnlySettings"]["value"])
    assert {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION"} <= dedicated_only
    main_settings = set(parse(MAIN)["variables"]["appSettings"]["value"])
    assert not dedicated_only & main_settings
