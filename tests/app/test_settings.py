"""Settings: the sample file is valid, defaults are sane, and every error names its setting."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.settings import NodePriority, Settings, SettingsError, TriggerSource, vm_cores

SAMPLE = json.loads((Path(__file__).resolve().parents[2] / "local.settings.sample.json").read_text())["Values"]


def env(**overrides: str) -> dict[str, str]:
    values = dict(SAMPLE)
    for key, value in overrides.items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    return values


def test_sample_settings_are_valid_and_local():
    s = Settings.from_env(SAMPLE)
    assert s.storage.connection_string == "UseDevelopmentStorage=true" and not s.storage.uses_identity
    assert s.batch_account_key and s.batch_token_scope is None
    assert (s.input_container, s.output_container, s.logs_container) == ("input", "output", "logs")
    assert s.task_slots_per_node == 2            # Standard_D2ds_v5 has 2 vCPUs
    assert s.node_agent_sku_id == "batch.node.ubuntu 24.04"
    assert s.trigger_source is TriggerSource.POLLING
    assert s.node_priority is NodePriority.DEDICATED


def test_every_setting_the_app_reads_is_in_the_sample():
    import inspect
    import re

    import shared.settings as module
    source = inspect.getsource(module)
    read = set(re.findall(r'r\.\w+\("([A-Z0-9_]+)"', source)) | {"BLOB_TRIGGER_SOURCE", "MEDIA_STORAGE"}
    assert read - set(SAMPLE) == set()


@pytest.mark.parametrize("name,value,needle", [
    ("BATCH_ACCOUNT_URL", "not a url", "absolute"),
    ("BATCH_ACCOUNT_URL", None, "required"),
    ("BATCH_ACCOUNT_NAME", "", "required"),
    ("INPUT_CONTAINER", "Bad_Name", "container"),
    ("LEDGER_TABLE", "1ledger", "table"),
    ("BATCH_POOL_ID", "pool with spaces", "Batch id"),
    ("BATCH_JOB_ID", "j" * 65, "Batch id"),
    ("POOL_MAX_NODES", "zero", "integer"),
    ("POOL_MAX_NODES", "0", "between"),
    ("MP3_QUALITY", "10", "between"),
    ("MAX_INPUT_BYTES", "0", "between"),
    ("MAX_INPUT_BYTES", "10GB", "integer"),
    ("TASK_MAX_RETRIES", "-1", "between"),
    ("POOL_AUTOSCALE_INTERVAL_MINUTES", "4", "between"),   # the service's minimum is 5 minutes
    ("POOL_IMAGE", "canonical:ubuntu", "publisher:offer:sku:version"),
    ("POOL_NODE_PRIORITY", "cheap", "dedicated, spot"),
    ("BLOB_TRIGGER_SOURCE", "webhook", "EventGrid"),
    ("FFMPEG_SHA256", "abc", "64 hex"),
    ("POOL_TASK_SLOTS_PER_NODE", "9", "between 1 and 8"),  # 4 x cores is the service's cap
    ("NODE_SAS_TTL_MINUTES", "60", "TASK_MAX_WALL_CLOCK_MINUTES"),
    ("MEDIA_STORAGE", None, "__blobServiceUri"),
])
def test_errors_name_the_setting(name, value, needle):
    with pytest.raises(SettingsError) as err:
        Settings.from_env(env(**{name: value}))
    assert err.value.setting == name
    assert name in str(err.value) and needle in str(err.value)


def test_containers_must_differ():
    with pytest.raises(SettingsError, match="OUTPUT_CONTAINER"):
        Settings.from_env(env(OUTPUT_CONTAINER="input"))


def test_unknown_image_needs_node_agent():
    with pytest.raises(SettingsError) as err:
        Settings.from_env(env(POOL_IMAGE="someone:custom:1:latest", POOL_NODE_AGENT_SKU_ID=""))
    assert err.value.setting == "POOL_NODE_AGENT_SKU_ID"
    s = Settings.from_env(env(POOL_IMAGE="canonical:0001-com-ubuntu-server-jammy:22_04-lts:latest",
                              POOL_NODE_AGENT_SKU_ID=""))
    assert s.node_agent_sku_id == "batch.node.ubuntu 22.04"


def test_unknown_vm_size_needs_slots():
    with pytest.raises(SettingsError) as err:
        Settings.from_env(env(POOL_VM_SIZE="Custom", POOL_TASK_SLOTS_PER_NODE=""))
    assert err.value.setting == "POOL_TASK_SLOTS_PER_NODE"
    assert Settings.from_env(env(POOL_VM_SIZE="Custom", POOL_TASK_SLOTS_PER_NODE="3")).task_slots_per_node == 3


@pytest.mark.parametrize("size,cores", [("Standard_D2s_v5", 2), ("Standard_A1_v2", 1), ("Standard_F16s_v2", 16),
                                        ("Standard_E4-2s_v5", 2), ("Standard_NC24ads_A100_v4", 24), ("weird", None)])
def test_vm_cores(size, cores):
    assert vm_cores(size) == cores


def test_identity_mode_in_azure_china():
    # Sovereign cloud: storage URIs, Batch URL and authority from settings; scope derived from the suffix.
    s = Settings.from_env(env(
        MEDIA_STORAGE="", BATCH_ACCOUNT_KEY="",
        MEDIA_STORAGE__blobServiceUri="https://media.blob.core.chinacloudapi.cn",
        MEDIA_STORAGE__tableServiceUri="https://media.table.core.chinacloudapi.cn",
        BATCH_ACCOUNT_URL="https://acct.chinanorth3.batch.chinacloudapi.cn",
        AZURE_AUTHORITY_HOST="https://login.chinacloudapi.cn"))
    assert s.storage.uses_identity and s.storage.blob_service_uri.endswith("chinacloudapi.cn")
    assert s.batch_account_key is None
    assert s.batch_token_scope == "https://batch.chinacloudapi.cn/.default"
    assert s.authority_host == "https://login.chinacloudapi.cn"


def test_public_cloud_scope_and_unknown_cloud():
    s = Settings.from_env(env(BATCH_ACCOUNT_KEY="", BATCH_ACCOUNT_URL="https://a.westeurope.batch.azure.com"))
    assert s.batch_token_scope == "https://batch.core.windows.net//.default"
    with pytest.raises(SettingsError) as err:
        Settings.from_env(env(BATCH_ACCOUNT_KEY="", BATCH_ACCOUNT_URL="https://a.example.org"))
    assert err.value.setting == "BATCH_TOKEN_SCOPE"
    s = Settings.from_env(env(BATCH_ACCOUNT_KEY="", BATCH_ACCOUNT_URL="https://a.example.org",
                              BATCH_TOKEN_SCOPE="https://batch.example.org/.default"))
    assert s.batch_token_scope == "https://batch.example.org/.default"


def test_spot_and_static_ffmpeg():
    sha = "ab" * 32
    s = Settings.from_env(env(POOL_NODE_PRIORITY="Spot", FFMPEG_BINARY_URL="https://x.blob.core.windows.net/tools/ffmpeg",
                              FFMPEG_SHA256=sha.upper()))
    assert s.node_priority is NodePriority.SPOT and s.ffmpeg_sha256 == sha
    with pytest.raises(SettingsError, match="FFMPEG_SHA256"):
        Settings.from_env(env(FFMPEG_SHA256=sha, FFMPEG_BINARY_URL=""))
