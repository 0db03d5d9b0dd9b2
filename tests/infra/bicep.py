"""Offline reading of the Bicep templates (no Bicep compiler can be installed here).

Two independent parsers: pycep-parser (a Lark grammar of Bicep; gives the template as data:
parameters, variables, resources, modules, outputs) and tree-sitter-bicep (the tree-sitter
grammar; any syntax error shows as an ERROR node). On top of them, `Evaluator` computes the
values of simple expressions (literals, parameters, variables, module outputs, interpolation,
ternaries, string()/empty()/environment()) so tests can check what the app settings *would be*.
Anything it does not understand raises, rather than guessing.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tree_sitter
import tree_sitter_bicep
from pycep import BicepParser

INFRA = Path(__file__).resolve().parents[2] / "infra"
MAIN = INFRA / "main.bicep"


@functools.lru_cache(maxsize=None)
def parse(path: Path) -> dict[str, Any]:
    return BicepParser().parse(text=path.read_text(encoding="utf-8"))


def tree_sitter_errors(path: Path) -> list[str]:
    """Positions of ERROR/MISSING nodes from the tree-sitter grammar (empty: parses cleanly)."""
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))
    tree = parser.parse(path.read_bytes())
    problems: list[str] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            row, col = node.start_point
            problems.append(f"{path.name}:{row + 1}:{col + 1}: {node.type}")
        stack.extend(node.children)
    return problems


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def module_path(main: Path, module: dict[str, Any]) -> Path:
    return (main.parent / module["detail"]["path"]).resolve()


# Values a cloud's environment() reports (public cloud; see `az cloud show`).
PUBLIC_CLOUD_ENVIRONMENT = {
    "name": "AzureCloud",
    "batch": "https://batch.core.windows.net/",
    "authentication": {"loginEndpoint": "https://login.microsoftonline.com/"},
    "suffixes": {"storage": "core.windows.net"},
}
CHINA_CLOUD_ENVIRONMENT = {
    "name": "AzureChinaCloud",
    "batch": "https://batch.chinacloudapi.cn/",
    "authentication": {"loginEndpoint": "https://login.chinacloudapi.cn/"},
    "suffixes": {"storage": "core.chinacloudapi.cn"},
}

_INTERPOLATION = re.compile(r"\$\{([^}]*)\}")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_INDEXED = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\[(\d+)\]$")


class Unsupported(ValueError):
    """An expression the evaluator does not model; extend it instead of guessing."""


@dataclass
class Evaluator:
    template: dict[str, Any]
    module_outputs: dict[str, dict[str, Any]]
    parameters: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=lambda: dict(PUBLIC_CLOUD_ENVIRONMENT))
    path: Path = MAIN  # the template's file: loadJsonContent() paths are relative to it

    def param(self, name: str) -> Any:
        if name in self.parameters:
            return self.parameters[name]
        spec = self.template["parameters"][name]
        if "default" not in spec:
            raise Unsupported(f"parameter {name} has no default; pass it")
        return self.eval(spec["default"])

    def var(self, name: str) -> Any:
        return self.eval(self.template["variables"][name]["value"])

    def name(self, text: str) -> Any:
        if text in self.template.get("parameters", {}):
            return self.param(text)
        if text in self.template.get("variables", {}):
            return self.var(text)
        raise KeyError(text)

    def dotted(self, parts: list[str]) -> Any:
        head, *rest = parts
        if head in self.module_outputs and rest[:1] == ["outputs"]:
            value: Any = self.module_outputs[head]
            rest = rest[1:]
        else:
            value = self.name(head)
        for part in rest:
            value = value[part]
        return value

    def eval(self, node: Any) -> Any:
        if isinstance(node, (bool, int, float)) or node is None:
            return node
        if isinstance(node, str):
            # pycep gives identifiers and string literals alike; names win, the rest is literal.
            if _IDENTIFIER.match(node):
                try:
                    return self.name(node)
                except KeyError:
                    return node
            if _DOTTED.match(node):
                try:
                    return self.dotted(node.split("."))
                except KeyError:
                    return node
            return _INTERPOLATION.sub(lambda m: str(self._interpolated(m.group(1))), node)
        if isinstance(node, list):
            return [self.eval(item) for item in node]
        if isinstance(node, dict) and "operator" in node:
            return self._operator(node["operator"])
        if isinstance(node, dict) and "function" in node:
            return self._function(node["function"])
        if isinstance(node, dict):
            return {self._key(key): self.eval(value) for key, value in node.items()}
        raise Unsupported(repr(node))

    def _key(self, key: str) -> str:
        """Object keys: plain, or a quoted string that may interpolate ('${id}')."""
        if len(key) >= 2 and key[0] == key[-1] == "'":
            return _INTERPOLATION.sub(lambda m: str(self._interpolated(m.group(1))), key[1:-1])
        return key

    def _interpolated(self, expression: str) -> Any:
        expression = expression.strip()
        if _IDENTIFIER.match(expression):
            return self.name(expression)
        if _DOTTED.match(expression):
            return self.dotted(expression.split("."))
        indexed = _INDEXED.match(expression)
        if indexed:
            return self.name(indexed.group(1))[int(indexed.group(2))]
        raise Unsupported(f"interpolation ${{{expression}}}")

    def _apply(self, value: Any, node: Any) -> Any:
        """The rest of an accessor chain (`a.b[c].d`) applied to a value: names are properties, indexes evaluate."""
        if isinstance(node, str):
            return value[node]
        if isinstance(node, dict) and node.get("operator", {}).get("type") == "property_accessor":
            operands = node["operator"]["operands"]
            return self._apply(self._apply(value, operands["operand_1"]), operands["operand_2"])
        if isinstance(node, dict) and node.get("operator", {}).get("type") == "index_accessor":
            operands = node["operator"]["operands"]
            return self._apply(value, operands["operand_1"])[self.eval(operands["operand_2"])]
        raise Unsupported(f"computed property access {node!r}")

    def _operator(self, op: dict[str, Any]) -> Any:
        kind, operands = op["type"], op.get("operands", {})
        if kind == "conditional":
            return self.eval(operands["true_value"] if self.eval(operands["condition"]) else operands["false_value"])
        if kind == "not":
            return not self.eval(operands["bool_value"])
        if kind in ("equals", "not_equals"):
            left, right = (self.eval(v) for v in operands.values())
            return (left == right) if kind == "equals" else (left != right)
        if kind == "property_accessor":
            head = operands["operand_1"]
            if isinstance(head, str) and head in self.module_outputs:
                return self._apply({"outputs": self.module_outputs[head]}, operands["operand_2"])
            return self._apply(self.eval(head), operands["operand_2"])
        if kind == "index_accessor":
            return self.eval(operands["operand_1"])[self.eval(operands["operand_2"])]
        raise Unsupported(f"operator {kind}")

    def _function(self, fn: dict[str, Any]) -> Any:
        kind, params = fn["type"], fn.get("parameters", {})
        if kind == "environment":
            return self.environment
        if kind == "string":
            value = self.eval(params["value_to_convert"])
            return str(value).lower() if isinstance(value, bool) else str(value)
        if kind == "empty":
            return not self.eval(params["item_to_test"])
        if kind == "load_json_content":
            if params.get("json_path") or params.get("encoding"):
                raise Unsupported("loadJsonContent with a path or encoding")
            return json.loads((self.path.parent / params["file_path"]).read_text(encoding="utf-8"))
        if kind == "split":
            return str(self.eval(params["input_string"])).split(self.eval(params["delimiter"]))
        if kind == "replace":
            return str(self.eval(params["original_string"])).replace(self.eval(params["old_string"]),
                                                                     self.eval(params["new_string"]))
        if kind == "to_lower":
            return str(self.eval(params["string_to_change"])).lower()
        if kind == "union":
            merged: dict[str, Any] = {}
            for value in (self.eval(v) for v in params.values()):
                if not isinstance(value, dict):
                    raise Unsupported("union() of non-objects")
                merged.update(value)
            return merged
        raise Unsupported(f"function {kind}()")
