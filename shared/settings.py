"""App settings: read once from the environment (app settings / local.settings.json), validated.

Every error is a `SettingsError` that names the setting, so a typo in an app setting fails the
first invocation with a message an operator can act on instead of a subtly different service.
Nothing here is tied to one Azure cloud: endpoints come from settings (BATCH_ACCOUNT_URL, the
storage service URIs, AZURE_AUTHORITY_HOST); the Batch token scope is derived from the account
URL's DNS suffix for the known clouds or given explicitly with BATCH_TOKEN_SCOPE.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

# The name the trigger decorator uses for its `connection`; the app's own storage clients read
# the same setting (or its identity-based `__blobServiceUri` / `__tableServiceUri` variants).
MEDIA_CONNECTION = "MEDIA_STORAGE"

# Batch ids (pool, job, task): letters, digits, hyphen, underscore, at most 64 characters
# (azure-batch 15.1.0 BatchPoolCreateOptions.id / BatchTaskCreateOptions.id docstrings).
BATCH_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Container names: 3-63 chars, lowercase letters, digits, single hyphens, not at either end.
_CONTAINER_RE = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$")
# Table names: 3-63 alphanumeric characters, not starting with a digit.
_TABLE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")
# Azure VM size names carry the vCPU count after the family letters; constrained-core sizes
# (Standard_E4-2s_v5) name the active count after the hyphen.
_VM_CORES_RE = re.compile(r"^(?:Standard|Basic)_[A-Za-z]+(\d+)(?:-(\d+))?", re.IGNORECASE)

# Node agent SKU for the marketplace images this app knows; another image needs
# POOL_NODE_AGENT_SKU_ID. Ubuntu 18.04 (the tutorial's) is retired for Batch.
_KNOWN_NODE_AGENTS: dict[tuple[str, str], str] = {
    ("canonical", "ubuntu-24_04-lts"): "batch.node.ubuntu 24.04",
    ("canonical", "0001-com-ubuntu-server-jammy"): "batch.node.ubuntu 22.04",
}

# Entra ID scope of the Batch data plane per cloud, keyed by the account URL's DNS suffix
# (az cloud show: batchResourceId for AzureCloud / AzureChinaCloud / AzureUSGovernment).
_BATCH_SCOPES: dict[str, str] = {
    ".batch.azure.com": "https://batch.core.windows.net//.default",
    ".batch.chinacloudapi.cn": "https://batch.chinacloudapi.cn/.default",
    ".batch.usgovcloudapi.net": "https://batch.core.usgovcloudapi.net/.default",
}


class SettingsError(ValueError):
    """A setting is missing or invalid; `setting` is its app-setting name."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"app setting {setting}: {problem}")
        self.setting = setting


class TriggerSource(str, Enum):
    POLLING = "LogsAndContainerScan"
    EVENT_GRID = "EventGrid"


class NodePriority(str, Enum):
    DEDICATED = "dedicated"
    SPOT = "spot"  # Batch "low-priority" nodes ($TargetLowPriorityNodes)


@dataclass(frozen=True)
class StorageConnection:
    """Either a connection string (local / key-based) or identity-based service URIs."""

    connection_string: str | None
    blob_service_uri: str | None
    table_service_uri: str | None
    client_id: str | None  # user-assigned managed identity, if any

    @property
    def uses_identity(self) -> bool:
        return self.connection_string is None


@dataclass(frozen=True)
class ImageReference:
    publisher: str
    offer: str
    sku: str
    version: str


@dataclass(frozen=True)
class Settings:
    storage: StorageConnection
    input_container: str
    output_container: str
    logs_container: str
    ledger_table: str
    batch_account_url: str
    batch_account_name: str
    batch_account_key: str | None       # None: Entra ID (DefaultAzureCredential)
    batch_token_scope: str | None       # only used with Entra ID
    authority_host: str | None          # None: azure-identity's default (public cloud) or AZURE_AUTHORITY_HOST
    storage_audience: str | None        # None: the storage SDKs' default audience
    pool_id: str
    job_id: str
    vm_size: str
    image: ImageReference
    node_agent_sku_id: str
    node_priority: NodePriority
    max_nodes: int
    task_slots_per_node: int
    autoscale_interval_minutes: int
    pool_identity_resource_id: str | None  # set: nodes reach storage with this identity, no SAS
    ffmpeg_binary_url: str | None          # set: a pinned static ffmpeg, else apt-get
    ffmpeg_sha256: str | None
    mp3_quality: int                        # libmp3lame VBR -q:a, 0 (best) .. 9
    task_max_retries: int
    task_max_wall_clock_minutes: int
    node_sas_ttl_minutes: int
    trigger_source: TriggerSource

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        r = _Reader(env)
        storage = _storage_connection(r)
        account_url = r.url("BATCH_ACCOUNT_URL")
        account_key = r.optional("BATCH_ACCOUNT_KEY")
        token_scope = r.optional("BATCH_TOKEN_SCOPE")
        if account_key is None and token_scope is None:
            token_scope = _derive_batch_scope(account_url)
        vm_size = r.text("POOL_VM_SIZE", "Standard_D2s_v5")
        image = _image(r)
        wall_clock = r.integer("TASK_MAX_WALL_CLOCK_MINUTES", 60, low=1, high=7 * 24 * 60)
        retries = r.integer("TASK_MAX_RETRIES", 1, low=0, high=10)
        ttl = r.integer("NODE_SAS_TTL_MINUTES", 240, low=15, high=7 * 24 * 60)
        # The SAS is minted at submit: it must outlive every try plus a wait for nodes to start.
        if ttl < wall_clock * (retries + 1) + 15:
            raise SettingsError("NODE_SAS_TTL_MINUTES", (
                f"{ttl} min is shorter than TASK_MAX_WALL_CLOCK_MINUTES x (TASK_MAX_RETRIES + 1) + 15 "
                f"= {wall_clock * (retries + 1) + 15} min; tasks could outlive their storage access"))
        ffmpeg_url = r.optional("FFMPEG_BINARY_URL")
        ffmpeg_sha = r.optional("FFMPEG_SHA256")
        if ffmpeg_url is not None:
            _check_url("FFMPEG_BINARY_URL", ffmpeg_url)
        if ffmpeg_sha is not None and not _SHA256_RE.match(ffmpeg_sha):
            raise SettingsError("FFMPEG_SHA256", "must be 64 hex digits (sha256 of the ffmpeg binary)")
        if ffmpeg_sha is not None and ffmpeg_url is None:
            raise SettingsError("FFMPEG_SHA256", "is set but FFMPEG_BINARY_URL is not")
        settings = cls(
            storage=storage,
            input_container=r.container("INPUT_CONTAINER", "input"),
            output_container=r.container("OUTPUT_CONTAINER", "output"),
            logs_container=r.container("LOGS_CONTAINER", "logs"),
            ledger_table=r.table("LEDGER_TABLE", "ledger"),
            batch_account_url=account_url,
            batch_account_name=r.required("BATCH_ACCOUNT_NAME"),
            batch_account_key=account_key,
            batch_token_scope=token_scope,
            authority_host=r.optional_url("AZURE_AUTHORITY_HOST"),
            storage_audience=r.optional_url("STORAGE_AUDIENCE"),
            pool_id=r.batch_id("BATCH_POOL_ID", "ffmpeg-pool"),
            job_id=r.batch_id("BATCH_JOB_ID", "ffmpeg-jobs"),
            vm_size=vm_size,
            image=image,
            node_agent_sku_id=_node_agent(r, image),
            node_priority=r.choice("POOL_NODE_PRIORITY", NodePriority, NodePriority.DEDICATED),
            max_nodes=r.integer("POOL_MAX_NODES", 4, low=1, high=1000),
            task_slots_per_node=_slots(r, vm_size),
            autoscale_interval_minutes=r.integer("POOL_AUTOSCALE_INTERVAL_MINUTES", 5, low=5, high=168 * 60),
            pool_identity_resource_id=r.optional("POOL_IDENTITY_RESOURCE_ID"),
            ffmpeg_binary_url=ffmpeg_url,
            ffmpeg_sha256=ffmpeg_sha.lower() if ffmpeg_sha else None,
            mp3_quality=r.integer("MP3_QUALITY", 2, low=0, high=9),
            task_max_retries=retries,
            task_max_wall_clock_minutes=wall_clock,
            node_sas_ttl_minutes=ttl,
            trigger_source=trigger_source(env),
        )
        if len({settings.input_container, settings.output_container, settings.logs_container}) != 3:
            # Writing MP3s or logs into the watched container would trigger ourselves.
            raise SettingsError("OUTPUT_CONTAINER", "INPUT_CONTAINER, OUTPUT_CONTAINER and LOGS_CONTAINER must differ")
        return settings


def trigger_source(env: Mapping[str, str]) -> TriggerSource:
    """BLOB_TRIGGER_SOURCE, read on its own: function_app.py needs it at import (decorator args)."""
    return _Reader(env).choice("BLOB_TRIGGER_SOURCE", TriggerSource, TriggerSource.POLLING)


class _Reader:
    """Typed access to raw settings; blank values count as unset."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def optional(self, name: str) -> str | None:
        value = self._env.get(name)
        if value is None or not value.strip():
            return None
        return value.strip()

    def required(self, name: str) -> str:
        value = self.optional(name)
        if value is None:
            raise SettingsError(name, "is required but not set")
        return value

    def text(self, name: str, default: str) -> str:
        return self.optional(name) or default

    def url(self, name: str) -> str:
        value = self.required(name).rstrip("/")
        _check_url(name, value)
        return value

    def optional_url(self, name: str) -> str | None:
        value = self.optional(name)
        if value is not None:
            _check_url(name, value)
        return value

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(name, f"must be an integer, got {raw!r}") from None
        if not low <= value <= high:
            raise SettingsError(name, f"must be between {low} and {high}, got {value}")
        return value

    def choice(self, name: str, enum: type[Enum], default: Enum):
        raw = self.optional(name)
        if raw is None:
            return default
        for member in enum:
            if member.value.lower() == raw.lower():
                return member
        allowed = ", ".join(m.value for m in enum)
        raise SettingsError(name, f"must be one of {allowed}, got {raw!r}")

    def container(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if not _CONTAINER_RE.match(value):
            raise SettingsError(name, f"{value!r} is not a valid blob container name")
        return value

    def table(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if not _TABLE_RE.match(value):
            raise SettingsError(name, f"{value!r} is not a valid table name (3-63 letters/digits)")
        return value

    def batch_id(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if not BATCH_ID_RE.match(value):
            raise SettingsError(name, f"{value!r} is not a valid Batch id (letters, digits, -, _; max 64)")
        return value


def _check_url(name: str, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(name, "must be an absolute http(s) URL")


def _storage_connection(r: _Reader) -> StorageConnection:
    conn = r.optional(MEDIA_CONNECTION)
    blob_uri = r.optional(f"{MEDIA_CONNECTION}__blobServiceUri") or r.optional(f"{MEDIA_CONNECTION}__serviceUri")
    table_uri = r.optional(f"{MEDIA_CONNECTION}__tableServiceUri")
    client_id = r.optional(f"{MEDIA_CONNECTION}__clientId")
    if conn is not None:
        return StorageConnection(conn, None, None, client_id)
    if blob_uri is None or table_uri is None:
        raise SettingsError(MEDIA_CONNECTION, (
            f"set a connection string, or identity-based {MEDIA_CONNECTION}__blobServiceUri and "
            f"{MEDIA_CONNECTION}__tableServiceUri (plus __queueServiceUri for the trigger)"))
    _check_url(f"{MEDIA_CONNECTION}__blobServiceUri", blob_uri)
    _check_url(f"{MEDIA_CONNECTION}__tableServiceUri", table_uri)
    return StorageConnection(None, blob_uri.rstrip("/"), table_uri.rstrip("/"), client_id)


def _derive_batch_scope(account_url: str) -> str:
    host = (urlsplit(account_url).hostname or "").lower()
    for suffix, scope in _BATCH_SCOPES.items():
        if host.endswith(suffix):
            return scope
    raise SettingsError("BATCH_TOKEN_SCOPE", (
        f"cannot derive the Entra ID scope for Batch endpoint host {host!r}; set BATCH_TOKEN_SCOPE "
        "(e.g. https://batch.core.windows.net//.default) or BATCH_ACCOUNT_KEY"))


def _image(r: _Reader) -> ImageReference:
    raw = r.text("POOL_IMAGE", "canonical:ubuntu-24_04-lts:server:latest")
    parts = raw.split(":")
    if len(parts) != 4 or not all(parts):
        raise SettingsError("POOL_IMAGE", f"must be publisher:offer:sku:version, got {raw!r}")
    return ImageReference(*parts)


def _node_agent(r: _Reader, image: ImageReference) -> str:
    explicit = r.optional("POOL_NODE_AGENT_SKU_ID")
    if explicit is not None:
        return explicit
    known = _KNOWN_NODE_AGENTS.get((image.publisher.lower(), image.offer.lower()))
    if known is None:
        raise SettingsError("POOL_NODE_AGENT_SKU_ID", (
            f"no known node agent for image {image.publisher}:{image.offer}; set it explicitly"))
    return known


def vm_cores(vm_size: str) -> int | None:
    """vCPUs from an Azure VM size name (Standard_D2s_v5 -> 2, Standard_E4-2s_v5 -> 2), or None."""
    match = _VM_CORES_RE.match(vm_size)
    if match is None:
        return None
    return int(match.group(2) or match.group(1)) or None


def _slots(r: _Reader, vm_size: str) -> int:
    # ffmpeg's MP3 encoder is single-threaded: one task per core keeps every core busy.
    cores = vm_cores(vm_size)
    if r.optional("POOL_TASK_SLOTS_PER_NODE") is None and cores is None:
        raise SettingsError("POOL_TASK_SLOTS_PER_NODE", (
            f"cannot infer the cores of POOL_VM_SIZE {vm_size!r}; set the slots explicitly"))
    # The service caps slots at min(4 x cores, 256).
    high = min(4 * cores, 256) if cores else 256
    return r.integer("POOL_TASK_SLOTS_PER_NODE", min(cores or 1, 256), low=1, high=high)
