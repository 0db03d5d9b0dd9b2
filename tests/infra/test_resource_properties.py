"""A lint of the Bicep the compiler would do: no property a resource type does not have, no enum value it does
not accept, for every resource declared in infra/ (not `existing` ones).

The property lists are tests/infra/schemas/resource_properties.json, extracted from Azure/bicep-types-az (the
type definitions the Bicep compiler itself uses; source commit recorded in the file) by
tests/infra/schemas/extract.py - only the types and api versions our templates use, writable properties only.
A resource type or api version the file lacks fails the test: re-run the extractor."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.infra.bicep import INFRA, bicep_files, parse

SCHEMAS = json.loads((Path(__file__).parent / "schemas" / "resource_properties.json").read_text())["types"]
BICEP_ONLY = {"parent", "scope", "dependsOn", "name"}  # resource keywords, not ARM body properties
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def _resource_body(resource: dict[str, Any]) -> dict[str, Any]:
    config = resource["config"]
    while isinstance(config.get("config"), dict):  # conditions and loops nest the body
        config = config["config"]
    return config


class Lint:
    def __init__(self, template: dict[str, Any], where: str) -> None:
        self.names = set(template.get("parameters", {})) | set(template.get("variables", {}))
        self.where = where
        self.problems: list[str] = []

    def literal(self, value: Any) -> bool:
        """A plain string literal (pycep gives identifiers and literals alike)."""
        return isinstance(value, str) and "${" not in value and not (
            _IDENTIFIER.match(value) and value.split(".")[0] in self.names)

    def check(self, value: Any, shape: dict[str, Any], path: str) -> None:
        if isinstance(value, dict) and "operator" in value:
            operator = value["operator"]
            if operator["type"] == "conditional":
                self.check(operator["operands"]["true_value"], shape, path)
                self.check(operator["operands"]["false_value"], shape, path)
            return  # any other expression: its value is not known here
        if isinstance(value, dict) and "function" in value:
            function = value["function"]
            if function["type"] == "union":  # each object merged in must fit the shape
                for argument in function["parameters"].values():
                    self.check(argument, shape, path)
            return
        if isinstance(value, list):
            for i, item in enumerate(value):
                if "items" in shape:
                    self.check(item, shape["items"], f"{path}[{i}]")
            return
        if isinstance(value, dict):
            self.check_object(value, shape, path)
            return
        if "enum" in shape and self.literal(value) and value not in shape["enum"]:
            self.problems.append(f"{self.where}: {path} = {value!r}, not one of {shape['enum']}")

    def check_object(self, value: dict[str, Any], shape: dict[str, Any], path: str) -> None:
        if not shape or shape.get("additional") and not shape.get("properties"):
            return  # any object
        known = dict(shape.get("properties", {}))
        if "variants" in shape:
            chosen = value.get(shape["discriminator"])
            variants = [shape["variants"][chosen]] if chosen in shape["variants"] else shape["variants"].values()
            for variant in variants:
                known.update(variant.get("properties", {}))
        for key, item in value.items():
            name = key[1:-1] if key.startswith("'") and key.endswith("'") else key
            if name in known:
                self.check(item, known[name], f"{path}.{name}")
            elif not shape.get("additional"):
                self.problems.append(f"{self.where}: {path}.{name} is not a property of this type "
                                     f"(has: {', '.join(sorted(known))})")


def lint(path: Path) -> list[str]:
    template = parse(path)
    problems: list[str] = []
    for symbol, resource in template["resources"].items():
        if resource["existing"]:
            continue
        full = f"{resource['type']}@{resource['api_version']}"
        if full not in SCHEMAS:
            problems.append(f"{path.name}: {symbol}: {full} is not in resource_properties.json (run the extractor)")
            continue
        where = path.relative_to(INFRA).as_posix() if path.is_relative_to(INFRA) else path.name
        checker = Lint(template, f"{where}: {symbol}")
        body = {k: v for k, v in _resource_body(resource).items() if k not in BICEP_ONLY}
        shape = SCHEMAS[full]
        if "variants" in shape:
            name = _resource_body(resource).get("name")
            shape = {**shape, "properties": {**shape["properties"],
                                             **shape["variants"].get(name, {}).get("properties", {})}}
            shape.pop("variants")
        checker.check_object(body, shape, symbol)
        problems += checker.problems
    return problems


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(INFRA).as_posix())
def test_every_property_is_one_the_resource_type_has(path: Path):
    assert lint(path) == []


def test_the_lint_catches_a_misspelt_property_and_a_wrong_enum(tmp_path: Path):
    pool = (INFRA / "modules" / "pool.bicep").read_text()
    broken = tmp_path / "pool.bicep"
    broken.write_text(pool.replace("taskSlotsPerNode: taskSlotsPerNode", "taskSlotPerNode: taskSlotsPerNode")
                          .replace("access: 'Deny'", "access: 'Refuse'")
                          .replace("nodeAgentSkuId: effectiveNodeAgentSkuId", "nodeAgentSKUId: effectiveNodeAgentSkuId"))
    problems = "\n".join(lint(broken))
    assert "pool.properties.taskSlotPerNode is not a property" in problems
    assert "access = 'Refuse', not one of ['Allow', 'Deny']" in problems
    assert "virtualMachineConfiguration.nodeAgentSKUId is not a property" in problems  # data-plane casing
    storage = (INFRA / "modules" / "storage.bicep").read_text()
    broken_storage = tmp_path / "storage.bicep"
    broken_storage.write_text(storage.replace("allowSharedKeyAccess: false", "allowSharedKeysAccess: false"))
    assert any("allowSharedKeysAccess" in p for p in lint(broken_storage))


def test_the_property_lists_name_their_source():
    data = json.loads((Path(__file__).parent / "schemas" / "resource_properties.json").read_text())
    assert data["source"].startswith("https://github.com/Azure/bicep-types-az/tree/")
    assert all(t["file"].startswith("generated/") for t in data["types"].values())
