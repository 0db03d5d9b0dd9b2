"""Every app setting the code reads is set by the template, and every template setting is read.

The code's list is not written down twice: the app's settings loaders (every `from_env` in
shared/) are run against a recording mapping, and `%NAME%` binding expressions and trigger
`connection` prefixes are read from function_app.py. The template's list and values come from
main.bicep's `appSettings`, evaluated for the public cloud and for Azure China, and the app's
own validation must accept them."""
from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

import shared
from shared.settings import Settings, TriggerSource, trigger_source
from tests.infra.bicep import CHINA_CLOUD_ENVIRONMENT, MAIN, Evaluator, parse

REPO = MAIN.parent.parent

# Read by the code but deliberately absent in Azure.
NOT_SET_IN_AZURE = {
    "BATCH_ACCOUNT_KEY": "Batch shared keys are disabled; the app uses its managed identity",
    "MEDIA_STORAGE": "a connection string carries a key; Azure uses the identity-based MEDIA_STORAGE__* form "
                     "(and an exact-name setting would shadow the prefix form for the trigger)",
    "MEDIA_STORAGE__serviceUri": "alias of MEDIA_STORAGE__blobServiceUri; the trigger needs the multi-service form",
    "STORAGE_AUDIENCE": "the storage SDKs' default audience (https://storage.azure.com) serves every cloud",
}
# Set by the template for the Functions host / platform, not read by the app's code.
PLATFORM = {
    "AzureWebJobsStorage__blobServiceUri", "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__tableServiceUri", "AzureWebJobsStorage__credential", "AzureWebJobsStorage__clientId",
    "MEDIA_STORAGE__queueServiceUri",  # the blob trigger's internal queues (host); also the events queue's service
    "MEDIA_STORAGE__credential",       # host: identity-based connection
    "APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}

# Settings the template may set ahead of the code. Empty: the timer now binds %TIMER_SCHEDULE%.
# The test below fails as soon as the code reads a listed name, so this set cannot go stale.
PENDING_IN_CODE: set[str] = set()

PUBLIC_OUTPUTS = {
    "storage": {"name": "stabc", "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/stabc",
                "blobEndpoint": "https://stabc.blob.core.windows.net/",
                "queueEndpoint": "https://stabc.queue.core.windows.net/",
                "tableEndpoint": "https://stabc.table.core.windows.net/"},
    "hostStorage": {"name": "sthostabc",
                    "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/sthostabc",
                    "blobEndpoint": "https://sthostabc.blob.core.windows.net/",
                    "queueEndpoint": "https://sthostabc.queue.core.windows.net/",
                    "tableEndpoint": "https://sthostabc.table.core.windows.net/"},
    "appIdentity": {"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-func",
                    "clientId": "00000000-0000-0000-0000-0000000000c1", "principalId": "p-app", "name": "id-func"},
    "poolIdentity": {"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-pool",
                     "clientId": "00000000-0000-0000-0000-0000000000c2", "principalId": "p-pool", "name": "id-pool"},
    "batch": {"name": "baabc", "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Batch/batchAccounts/baabc",
              "url": "https://baabc.westeurope.batch.azure.com"},
    "monitoring": {"connectionString": "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://x/",
                   "appInsightsName": "appi"},
    "events": {"queueName": "conversion-events", "source": "/mp4tomp3/func-abc",
               "topicEndpoint": "https://evgt-events-abc.westeurope-1.eventgrid.azure.net/api/events"},
}
CHINA_OUTPUTS = {
    **PUBLIC_OUTPUTS,
    "storage": {**PUBLIC_OUTPUTS["storage"],
                "blobEndpoint": "https://stabc.blob.core.chinacloudapi.cn/",
                "queueEndpoint": "https://stabc.queue.core.chinacloudapi.cn/",
                "tableEndpoint": "https://stabc.table.core.chinacloudapi.cn/"},
    "hostStorage": {**PUBLIC_OUTPUTS["hostStorage"],
                    "blobEndpoint": "https://sthostabc.blob.core.chinacloudapi.cn/",
                    "queueEndpoint": "https://sthostabc.queue.core.chinacloudapi.cn/",
                    "tableEndpoint": "https://sthostabc.table.core.chinacloudapi.cn/"},
    "batch": {**PUBLIC_OUTPUTS["batch"], "url": "https://baabc.chinanorth3.batch.chinacloudapi.cn"},
}


def template_settings(outputs=PUBLIC_OUTPUTS, **kwargs) -> dict[str, str]:
    evaluator = Evaluator(parse(MAIN), outputs, **kwargs)
    settings = evaluator.var("appSettings")
    assert all(isinstance(v, str) for v in settings.values()), settings  # app settings are strings
    return settings


class RecordingEnv(Mapping[str, str]):
    """A read-only environment that remembers every name the code asked for."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return self._values[key]

    def get(self, key, default=None):  # type: ignore[override]
        self.read.add(key)
        return self._values.get(key, default)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("settings loaders must read names, not enumerate the environment")

    def __len__(self) -> int:
        return len(self._values)


def settings_loaders():
    """Every `from_env` classmethod in the app's package, plus the trigger source reader."""
    loaders = [trigger_source]
    for info in pkgutil.iter_modules(shared.__path__):
        module = importlib.import_module(f"shared.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and callable(getattr(cls, "from_env", None)):
                loaders.append(cls.from_env)
    return loaders


def function_app_names() -> set[str]:
    """%NAME% binding expressions and trigger connection prefixes in function_app.py."""
    source = (REPO / "function_app.py").read_text()
    names = set(re.findall(r"%([A-Za-z_][A-Za-z0-9_]*)%", source))
    return names


def read_by_code(env: Mapping[str, str]) -> set[str]:
    recorder = RecordingEnv(env)
    for loader in settings_loaders():
        loader(recorder)
    return recorder.read | function_app_names()


def local_settings() -> dict[str, str]:
    return json.loads((REPO / "local.settings.sample.json").read_text())["Values"]


def test_every_setting_the_code_reads_is_set_by_the_template():
    azure = template_settings()
    read = read_by_code(azure) | read_by_code(local_settings())
    missing = sorted(read - set(azure) - set(NOT_SET_IN_AZURE))
    assert not missing, f"read by the code but not set in infra/main.bicep appSettings: {missing}"


def test_every_template_setting_is_read_by_the_code_or_the_host():
    azure = template_settings()
    read = read_by_code(azure)
    unread = sorted(set(azure) - read - PLATFORM - PENDING_IN_CODE)
    assert not unread, f"set in infra/main.bicep but read by nothing: {unread}"
    now_read = sorted(PENDING_IN_CODE & read)
    assert not now_read, f"the code reads {now_read} now: remove them from PENDING_IN_CODE"


def test_the_deliberately_unset_settings_are_really_absent_and_still_read():
    azure = template_settings()
    assert not set(NOT_SET_IN_AZURE) & set(azure)
    read = read_by_code(azure) | read_by_code(local_settings())
    stale = sorted(set(NOT_SET_IN_AZURE) - read)
    assert not stale, f"NOT_SET_IN_AZURE lists settings the code no longer reads: {stale}"


def test_no_key_or_connection_string_is_deployed():
    azure = template_settings()
    for name, value in azure.items():
        assert "AccountKey=" not in value and "SharedAccessSignature" not in value, name
        assert not name.endswith("_KEY"), name


@pytest.mark.parametrize("cloud", ["public", "china"])
def test_the_app_accepts_the_template_values(cloud: str):
    if cloud == "public":
        azure = template_settings()
    else:
        azure = template_settings(CHINA_OUTPUTS, environment=dict(CHINA_CLOUD_ENVIRONMENT))
    settings = Settings.from_env(azure)
    assert trigger_source(azure) is TriggerSource.EVENT_GRID  # Flex Consumption: Event Grid only
    assert settings.storage.uses_identity
    assert settings.storage.client_id == PUBLIC_OUTPUTS["appIdentity"]["clientId"]
    assert settings.batch_account_key is None
    assert settings.pool_identity_resource_id == PUBLIC_OUTPUTS["poolIdentity"]["id"]
    if cloud == "public":
        assert settings.batch_token_scope == "https://batch.core.windows.net//.default"
        assert settings.authority_host == "https://login.microsoftonline.com/"
    else:
        assert settings.batch_token_scope == "https://batch.chinacloudapi.cn//.default"
        assert settings.authority_host == "https://login.chinacloudapi.cn/"
        assert settings.storage.blob_service_uri.endswith(".blob.core.chinacloudapi.cn")


def test_template_parameters_reach_the_app():
    azure = template_settings(parameters={"useSpot": True, "nodeStorageAccess": "userDelegationSas",
                                          "poolMaxNodes": 12, "poolVmSize": "Standard_F4s_v2",
                                          "poolTaskSlotsPerNode": 4,
                                          "authorityHost": "https://login.example.test/"})
    settings = Settings.from_env(azure)
    assert settings.node_priority.value == "spot"
    assert settings.pool_identity_resource_id is None  # nodes get user-delegation SAS instead
    assert settings.max_nodes == 12
    assert settings.task_slots_per_node == 4
    assert settings.authority_host == "https://login.example.test/"


def test_host_connections_are_identity_based_with_the_trigger_queues():
    azure = template_settings()
    for prefix in ("AzureWebJobsStorage", "MEDIA_STORAGE"):
        assert azure[f"{prefix}__credential"] == "managedidentity"
        assert azure[f"{prefix}__clientId"] == PUBLIC_OUTPUTS["appIdentity"]["clientId"]
        # blob triggers need the queue service too (identity-based connection docs)
        for service in ("blob", "queue"):
            assert azure[f"{prefix}__{service}ServiceUri"].startswith("https://")
    assert "AzureWebJobsStorage" not in azure
    # the host's storage is its own account; the app's media (trigger, clients) is the other one
    assert azure["AzureWebJobsStorage__blobServiceUri"] == PUBLIC_OUTPUTS["hostStorage"]["blobEndpoint"]
    assert azure["MEDIA_STORAGE__blobServiceUri"] == PUBLIC_OUTPUTS["storage"]["blobEndpoint"]


def test_default_pool_has_a_temporary_disk_and_one_slot_per_vcpu():
    settings = Settings.from_env(template_settings())
    assert settings.vm_size == "Standard_D2ds_v5"  # "d": a local temporary disk, where Batch puts task directories
    assert settings.task_slots_per_node == 2


def _blob_trigger_function_names() -> set[str]:
    tree = ast.parse((REPO / "function_app.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            decorators = [d for d in node.decorator_list if isinstance(d, ast.Call)]
            if any(getattr(d.func, "attr", "") == "blob_trigger" for d in decorators):
                explicit = [d.args[0].value for d in decorators
                            if getattr(d.func, "attr", "") == "function_name" and d.args]
                names.add(explicit[0] if explicit else node.name)
    return names


def test_event_grid_webhook_targets_the_deployed_blob_trigger():
    name = Evaluator(parse(MAIN), PUBLIC_OUTPUTS).var("blobTriggerFunctionName")
    assert _blob_trigger_function_names() == {name}
