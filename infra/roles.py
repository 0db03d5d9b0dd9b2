"""The role table (infra/roles.json) as data, and its Markdown rendering for docs/deploy.md.

    python -m infra.roles   # print the table docs/deploy.md embeds between its roles markers
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROLES_JSON = Path(__file__).resolve().parent / "roles.json"
PRINCIPALS = {
    "app": "function app identity (`id-func-…`)",
    "pool": "Batch pool identity (`id-pool-…`)",
    "deployer": "you (`AZURE_PRINCIPAL_ID`, set by azd)",
}


def load() -> dict[str, Any]:
    return json.loads(ROLES_JSON.read_text(encoding="utf-8"))


def _scope_text(scope: str) -> str:
    kind, _, name = scope.partition(":")
    if kind in ("container", "table", "queue"):
        return f"{kind} `{name}` (media account)"
    return {"storageAccount": "media storage account", "hostStorage": "host storage account (`sthost…`)",
            "batchAccount": "Batch account", "appInsights": "Application Insights"}.get(scope, scope)


def render_markdown(table: dict[str, Any] | None = None) -> str:
    table = table or load()
    lines = ["| who | role | scope | why |", "|---|---|---|---|"]
    for grant in table["grants"]:
        why = grant["why"].replace("|", "\\|")
        lines.append(f"| {PRINCIPALS[grant['principal']]} | {grant['role']} | {_scope_text(grant['scope'])} | {why} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_markdown())
