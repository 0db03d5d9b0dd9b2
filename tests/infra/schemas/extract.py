"""Extract the writable property tree of the resource types our Bicep uses from Azure/bicep-types-az.

Run by hand (not by the suite) against a checkout of https://github.com/Azure/bicep-types-az:

    .venv/bin/python -m tests.infra.schemas.extract /path/to/bicep-types-az > tests/infra/schemas/resource_properties.json

For each `type@apiVersion` declared in infra/**/*.bicep it reads generated/<rp>/<provider>/<apiVersion>/types.json
(the type definitions the Bicep compiler itself uses) and keeps only what a lint needs: for objects the names of
the properties a template may set (read-only ones dropped), for arrays their item shape, for string unions the
allowed literal values. Discriminated objects are the union of their variants' properties. Cycles stop at depth 12.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.infra.bicep import bicep_files, parse

READ_ONLY = 2
MAX_DEPTH = 12


def used_types() -> dict[str, set[str]]:
    """type@apiVersion -> the literal resource names declared for it (they pick a discriminated body's variant)."""
    found: dict[str, set[str]] = {}
    for path in bicep_files():
        for resource in parse(path)["resources"].values():
            config = resource["config"]
            while isinstance(config.get("config"), dict):
                config = config["config"]
            names = found.setdefault(f"{resource['type']}@{resource['api_version']}", set())
            if isinstance(config.get("name"), str) and "$" not in config["name"]:
                names.add(config["name"])
    return found


class Types:
    def __init__(self, items: list[dict[str, Any]], keep_variants: set[str] | None = None) -> None:
        self.items = items
        # A resource body discriminated by its name (Microsoft.Web/sites/config: appsettings, web, ...): keep
        # only the variants the templates declare, not the whole family.
        self.keep_variants = keep_variants

    def ref(self, ref: dict[str, Any]) -> dict[str, Any]:
        return self.items[int(ref["$ref"].split("/")[-1])]

    def shape(self, node: dict[str, Any], depth: int = 0) -> dict[str, Any]:
        kind = node["$type"]
        if depth > MAX_DEPTH:
            return {}
        if kind == "ObjectType":
            self.keep_variants = None
            props = {name: self.shape(self.ref(p["type"]), depth + 1)
                     for name, p in node.get("properties", {}).items() if not (p.get("flags", 0) & READ_ONLY)
                     or p.get("flags", 0) & 1}
            out: dict[str, Any] = {"properties": props}
            if "additionalProperties" in node:
                out["additional"] = True
            return out
        if kind == "DiscriminatedObjectType":
            keep, self.keep_variants = self.keep_variants, None  # only the resource body's own variants are filtered
            base = {name: self.shape(self.ref(p["type"]), depth + 1)
                    for name, p in node.get("baseProperties", {}).items() if not (p.get("flags", 0) & READ_ONLY)}
            variants = {value: self.shape(self.ref(element), depth + 1)
                        for value, element in node.get("elements", {}).items()
                        if keep is None or value in keep}
            return {"discriminator": node["discriminator"], "properties": base, "variants": variants}
        if kind == "ArrayType":
            return {"items": self.shape(self.ref(node["itemType"]), depth + 1)}
        if kind == "UnionType":
            members = [self.ref(e) for e in node["elements"]]
            if all(m["$type"] == "StringLiteralType" for m in members):
                return {"enum": sorted(m["value"] for m in members)}
            return {}
        return {}


def extract(repo: Path) -> dict[str, Any]:
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    out: dict[str, Any] = {"$comment": "Writable properties per resource type, extracted by tests/infra/schemas/extract.py "
                                       "from Azure/bicep-types-az (the compiler's type definitions).",
                           "source": f"https://github.com/Azure/bicep-types-az/tree/{commit}", "types": {}}
    listing = subprocess.run(["git", "-C", str(repo), "ls-tree", "-r", "--name-only", "HEAD", "generated/"],
                             capture_output=True, text=True, check=True).stdout.splitlines()
    used = used_types()
    for full in sorted(used):
        type_name, version = full.split("@")
        suffix = f"/{type_name.split('/')[0].lower()}/{version}/types.json"
        found = []
        for file in (f for f in listing if f.endswith(suffix)):  # one provider may span several folders
            types = Types(json.loads(_show(repo, file)), used[full] or None)
            found += [(file, types, t) for t in types.items
                      if t["$type"] == "ResourceType" and t["name"].lower() == full.lower()]
        if len(found) != 1:
            raise SystemExit(f"{full}: expected one declaration in a types.json ending {suffix}, found {len(found)}")
        file, types, resource = found[0]
        types.keep_variants = used[full] or None
        out["types"][full] = {"file": file, **types.shape(types.ref(resource["body"]))}
    return out


def _show(repo: Path, path: str) -> str:
    worktree = repo / path
    if worktree.exists():
        return worktree.read_text(encoding="utf-8")
    return subprocess.run(["git", "-C", str(repo), "show", f"HEAD:{path}"], capture_output=True, text=True,
                          check=True).stdout


if __name__ == "__main__":
    json.dump(extract(Path(sys.argv[1])), sys.stdout, indent=1, sort_keys=True)
    print()
