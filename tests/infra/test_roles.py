"""Every permission the code needs is granted, nothing more than the table says, and the docs
show the same table. The table is infra/roles.json; the Bicep module deploys it verbatim."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.data.tables import TableClient, TableServiceClient
from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient

from infra.roles import PRINCIPALS, load, render_markdown
from tests.infra.bicep import INFRA, MAIN, parse

REPO = INFRA.parent
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SCOPES = {"storageAccount", "hostStorage", "batchAccount", "appInsights", "container:input", "container:output",
          "container:logs", "table:ledger", "queue:webjobs-blobtrigger-poison"}
# Broad roles nobody in this deployment may hold.
FORBIDDEN_ROLE_IDS = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",  # Owner
    "b24988ac-6180-42a0-ab88-20f7382dd24c",  # Contributor
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",  # User Access Administrator
    "17d1049b-9a84-46fb-8f53-869881c3d3ab",  # Storage Account Contributor (can list keys)
}

_S = "Microsoft.Storage/storageAccounts"
_BLOBS = f"{_S}/blobServices/containers/blobs"
_ENTITIES = f"{_S}/tableServices/tables/entities"
_POOLS = "Microsoft.Batch/batchAccounts/pools"
_JOBS = "Microsoft.Batch/batchAccounts/jobs"
# SDK method -> (scope it needs, [(kind, permission)]). Data-plane calls map to the RBAC
# operations Azure checks for them (storage: "Permissions for calling data operations";
# Batch: pool operations are Microsoft.Batch/batchAccounts/pools/* actions, job and task
# operations are .../jobs/* data actions).
NEEDS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "get_user_delegation_key": ("storageAccount", [("actions", f"{_S}/blobServices/generateUserDelegationKey/action")]),
    "create_container": ("storageAccount", [("actions", f"{_S}/blobServices/containers/write")]),
    "get_container_properties": ("storageAccount", [("actions", f"{_S}/blobServices/containers/read")]),
    "get_blob_properties": ("storageAccount", [("dataActions", f"{_BLOBS}/read")]),
    "download_blob": ("storageAccount", [("dataActions", f"{_BLOBS}/read")]),
    "exists": ("storageAccount", [("dataActions", f"{_BLOBS}/read")]),
    "list_blobs": ("storageAccount", [("dataActions", f"{_BLOBS}/read")]),
    "list_blob_names": ("storageAccount", [("dataActions", f"{_BLOBS}/read")]),
    "walk_blobs": ("storageAccount", [("dataActions", f"{_BLOBS}/read")]),
    "upload_blob": ("storageAccount", [("dataActions", f"{_BLOBS}/write")]),
    "set_blob_metadata": ("storageAccount", [("dataActions", f"{_BLOBS}/write")]),
    "delete_blob": ("storageAccount", [("dataActions", f"{_BLOBS}/delete")]),
    "create_table": ("storageAccount", [("actions", f"{_S}/tableServices/tables/write")]),
    "create_entity": ("storageAccount", [("dataActions", f"{_ENTITIES}/add/action")]),
    "upsert_entity": ("storageAccount", [("dataActions", f"{_ENTITIES}/add/action"),
                                         ("dataActions", f"{_ENTITIES}/update/action")]),
    "update_entity": ("storageAccount", [("dataActions", f"{_ENTITIES}/update/action")]),
    "submit_transaction": ("storageAccount", [("dataActions", f"{_ENTITIES}/write"),
                                              ("dataActions", f"{_ENTITIES}/delete")]),
    "get_entity": ("storageAccount", [("dataActions", f"{_ENTITIES}/read")]),
    "query_entities": ("storageAccount", [("dataActions", f"{_ENTITIES}/read")]),
    "list_entities": ("storageAccount", [("dataActions", f"{_ENTITIES}/read")]),
    "delete_entity": ("storageAccount", [("dataActions", f"{_ENTITIES}/delete")]),
    "create_pool": ("batchAccount", [("actions", f"{_POOLS}/write")]),
    "enable_pool_auto_scale": ("batchAccount", [("actions", f"{_POOLS}/write")]),
    "disable_pool_auto_scale": ("batchAccount", [("actions", f"{_POOLS}/write")]),
    "evaluate_pool_auto_scale": ("batchAccount", [("actions", f"{_POOLS}/write")]),
    "resize_pool": ("batchAccount", [("actions", f"{_POOLS}/write")]),
    "begin_resize_pool": ("batchAccount", [("actions", f"{_POOLS}/write")]),
    "stop_pool_resize": ("batchAccount", [("actions", f"{_POOLS}/write")]),
    "begin_stop_pool_resize": ("batchAccount", [("actions", f"{_POOLS}/write")]),
    "update_pool": ("batchAccount", [("actions", f"{_POOLS}/write")]),
    "remove_nodes": ("batchAccount", [("actions", f"{_POOLS}/write")]),
    "begin_remove_nodes": ("batchAccount", [("actions", f"{_POOLS}/write")]),
    "get_pool": ("batchAccount", [("actions", f"{_POOLS}/read")]),
    "pool_exists": ("batchAccount", [("actions", f"{_POOLS}/read")]),
    "list_pools": ("batchAccount", [("actions", f"{_POOLS}/read")]),
    "list_nodes": ("batchAccount", [("actions", f"{_POOLS}/read")]),
    "get_node": ("batchAccount", [("actions", f"{_POOLS}/read")]),
    "list_pool_node_counts": ("batchAccount", [("actions", f"{_POOLS}/read")]),
    "create_job": ("batchAccount", [("dataActions", f"{_JOBS}/write")]),
    "get_job": ("batchAccount", [("dataActions", f"{_JOBS}/read")]),
    "job_exists": ("batchAccount", [("dataActions", f"{_JOBS}/read")]),
    "get_job_task_counts": ("batchAccount", [("dataActions", f"{_JOBS}/read")]),
    "list_jobs": ("batchAccount", [("dataActions", f"{_JOBS}/read")]),
    "update_job": ("batchAccount", [("dataActions", f"{_JOBS}/write")]),
    "replace_job": ("batchAccount", [("dataActions", f"{_JOBS}/write")]),
    "terminate_job": ("batchAccount", [("dataActions", f"{_JOBS}/write")]),
    "begin_terminate_job": ("batchAccount", [("dataActions", f"{_JOBS}/write")]),
    "delete_job": ("batchAccount", [("dataActions", f"{_JOBS}/delete")]),
    "begin_delete_job": ("batchAccount", [("dataActions", f"{_JOBS}/delete")]),
    "create_task": ("batchAccount", [("dataActions", f"{_JOBS}/tasks/write")]),
    "create_task_collection": ("batchAccount", [("dataActions", f"{_JOBS}/tasks/write")]),
    "create_tasks": ("batchAccount", [("dataActions", f"{_JOBS}/tasks/write")]),
    "get_task": ("batchAccount", [("dataActions", f"{_JOBS}/tasks/read")]),
    "list_tasks": ("batchAccount", [("dataActions", f"{_JOBS}/tasks/read")]),
    "get_task_file": ("batchAccount", [("dataActions", f"{_JOBS}/tasks/read")]),
    "delete_task": ("batchAccount", [("dataActions", f"{_JOBS}/tasks/delete")]),
    "terminate_task": ("batchAccount", [("dataActions", f"{_JOBS}/tasks/write")]),
}
# Which container each blob call of the app touches, by the file that makes it: the roles are per container, so
# a call site the table does not know fails the test (classify it here, then grant what it needs).
BLOB_CALL_SITES: dict[tuple[str, str], set[str]] = {
    ("shared/trigger.py", "get_blob_properties"): {"input"},
    ("shared/runtime.py", "exists"): {"input"},
    ("shared/runtime.py", "get_blob_properties"): {"output"},  # the MP3's size for the completion event
    ("shared/runtime.py", "create_container"): {"output", "logs"},
    ("shared/sweep.py", "list_blobs"): {"input"},
    ("shared/failure_logs.py", "download_blob"): {"logs"},
    ("shared/newest_wins.py", "get_blob_properties"): {"input", "output"},
}
# SDK members that make no service call, or that share a name with the app's own helpers.
NO_CALL = {"from_connection_string", "get_blob_client", "get_container_client", "get_table_client",
           "close", "url", "account_name", "credential", "api_version", "send_request", "primary_endpoint",
           "primary_hostname", "location_mode", "secondary_endpoint", "secondary_hostname"}
SDK_CLASSES = (BatchClient, BlobServiceClient, ContainerClient, BlobClient, TableClient, TableServiceClient)


def _sdk_methods() -> set[str]:
    return {n for cls in SDK_CLASSES for n in dir(cls) if not n.startswith("_")}


def sdk_calls_in_app() -> dict[str, set[str]]:
    """SDK method names the deployed code calls (attribute calls), with the files calling them."""
    methods = _sdk_methods()
    calls: dict[str, set[str]] = {}
    for path in [REPO / "function_app.py", *sorted((REPO / "shared").rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                name = node.func.attr
                if name in methods and name not in NO_CALL:
                    calls.setdefault(name, set()).add(path.relative_to(REPO).as_posix())
    return calls


def _matches(pattern: str, permission: str) -> bool:
    regex = "^" + re.escape(pattern).replace(r"\*", ".*") + "$"
    return re.match(regex, permission, re.IGNORECASE) is not None


def granted(table, principal: str, scope: str, kind: str, permission: str) -> list[str]:
    """Roles of `principal` that allow `permission` at `scope` (media account grants cover its containers,
    tables and queues)."""
    covering = {scope, "storageAccount"} if scope.split(":")[0] in ("container", "table", "queue") else {scope}
    return [g["role"] for g in table["grants"]
            if g["principal"] == principal and g["scope"] in covering
            and any(_matches(p, permission) for p in table["definitions"][g["role"]][kind])]


@pytest.fixture(scope="module")
def table():
    return load()


def test_table_is_well_formed(table):
    seen = set()
    for grant in table["grants"]:
        assert grant["principal"] in PRINCIPALS
        assert grant["role"] in table["definitions"], grant
        assert grant["scope"] in SCOPES, grant
        assert len(grant["why"]) > 20, grant
        key = (grant["principal"], grant["role"], grant["scope"])
        assert key not in seen, key
        seen.add(key)
    for name, definition in table["definitions"].items():
        assert GUID.match(definition["id"]), name
        assert definition["id"] not in FORBIDDEN_ROLE_IDS, name
    assert {g["role"] for g in table["grants"]} == set(table["definitions"]), "unused definitions"


def test_every_sdk_call_in_the_app_maps_to_a_known_permission():
    unknown = {name: files for name, files in sdk_calls_in_app().items() if name not in NEEDS}
    assert not unknown, f"add these SDK calls to NEEDS with the permission they require: {unknown}"


def scopes_of(name: str, files: set[str]) -> set[str]:
    """Where a call needs its permission: blob calls per container (BLOB_CALL_SITES), table calls on the ledger
    table, the rest where NEEDS says."""
    scope, permissions = NEEDS[name]
    if any(p.startswith(f"{_S}/blobServices/containers") for _, p in permissions):
        unknown = {f for f in files if (f, name) not in BLOB_CALL_SITES}
        assert not unknown, f"classify the blob call {name} in {sorted(unknown)} in BLOB_CALL_SITES"
        return {f"container:{c}" for f in files for c in BLOB_CALL_SITES[(f, name)]}
    if any(p.startswith(f"{_S}/tableServices") for _, p in permissions):
        return {"table:ledger"}
    return {scope}


def test_the_app_identity_holds_every_permission_its_code_needs(table):
    calls = sdk_calls_in_app()
    assert calls, "no SDK calls found in the app: the scan is broken"
    missing = []
    for name, files in calls.items():
        for scope in scopes_of(name, files):
            for kind, permission in NEEDS[name][1]:
                if not granted(table, "app", scope, kind, permission):
                    missing.append((name, scope, permission))
    assert not missing, missing


def test_the_app_cannot_write_an_upload_or_own_the_media_account(table):
    # issue 14: no Blob Data Owner on the media account; uploads are read-only to the app; its data rights on the
    # media account are per container, table and queue
    app_media = [g for g in table["grants"] if g["principal"] == "app" and g["scope"] != "hostStorage"]
    assert "Storage Blob Data Owner" not in {g["role"] for g in app_media}
    assert not granted(table, "app", "container:input", "dataActions", f"{_BLOBS}/write")
    assert not granted(table, "app", "container:input", "dataActions", f"{_BLOBS}/delete")
    account_wide = [g for g in app_media if g["scope"] == "storageAccount"]
    assert all(not table["definitions"][g["role"]]["dataActions"] for g in account_wide), account_wide
    # the host's broad role lives on the host's own account only
    host = {g["role"] for g in table["grants"] if g["scope"] == "hostStorage"}
    assert "Storage Blob Data Owner" in host
    assert {g["principal"] for g in table["grants"] if g["scope"] == "hostStorage"} == {"app"}


def test_every_blob_call_site_is_classified_and_still_exists():
    calls = sdk_calls_in_app()
    stale = {site for site in BLOB_CALL_SITES if site[0] not in calls.get(site[1], set())}
    assert not stale, f"BLOB_CALL_SITES lists calls the code no longer makes: {sorted(stale)}"


def test_the_permission_check_can_fail(table):
    without_batch = {**table, "grants": [g for g in table["grants"] if g["scope"] != "batchAccount"]}
    assert not granted(without_batch, "app", "batchAccount", "actions", f"{_POOLS}/write")
    assert granted(table, "app", "batchAccount", "actions", f"{_POOLS}/write") == ["Azure Batch Data Contributor"]


def _uses_identity_reference(module: str) -> bool:
    tree = ast.parse((REPO / "shared" / module).read_text())
    return any(isinstance(n, ast.keyword) and n.arg == "identity_reference" for n in ast.walk(tree))


def test_pool_identity_gets_exactly_what_a_task_does(table):
    # Tasks read their input by resource file and write MP3s and logs by output files, with the
    # pool identity when POOL_IDENTITY_RESOURCE_ID is set (shared/task_spec.py).
    assert _uses_identity_reference("task_spec.py")
    read, write = f"{_BLOBS}/read", f"{_BLOBS}/write"
    assert granted(table, "pool", "container:input", "dataActions", read)
    assert not granted(table, "pool", "container:input", "dataActions", write)
    for container in ("container:output", "container:logs"):
        assert granted(table, "pool", container, "dataActions", write)
    pool_scopes = {g["scope"] for g in table["grants"] if g["principal"] == "pool"}
    assert pool_scopes == {"container:input", "container:output", "container:logs"}


def test_bicep_deploys_the_table_for_every_scope_and_principal(table):
    module = (INFRA / "modules" / "role-assignments.bicep").read_text()
    assert "loadJsonContent('../roles.json')" in module
    for scope in {g["scope"] for g in table["grants"]}:
        kind = {"container": "container:", "queue": "queue:"}.get(scope.split(":")[0], scope)
        assert f"'{kind}'" in module, f"role-assignments.bicep deploys no grants for scope {scope}"
    roles_module = parse(MAIN)["modules"]["roles"]["config"]["params"]
    assert set(roles_module["principalIds"]) == set(PRINCIPALS)
    assert set(roles_module["containerNames"]) == {s.split(":")[1] for s in SCOPES if s.startswith("container:")}


def test_docs_show_the_same_table():
    docs = (REPO / "docs" / "deploy.md").read_text()
    match = re.search(r"<!-- roles:begin -->\n(.*?)\n<!-- roles:end -->", docs, re.S)
    assert match, "docs/deploy.md lacks the roles markers"
    assert match.group(1).strip() == render_markdown().strip(), "run: python -m infra.roles"
