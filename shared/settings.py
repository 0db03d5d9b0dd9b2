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
from datetime import timedelta
from enum import Enum
from urllib.parse import urlsplit

from .settings_reader import BATCH_ID_RE, Reader, SettingsError, check_url

__all__ = ["BATCH_ID_RE", "MEDIA_CONNECTION", "EventSink", "EventsSettings", "NodePriority", "Settings", "SettingsError",
           "TimerSettings", "TriggerSource", "trigger_source", "vm_cores"]

# The name the trigger decorator uses for its `connection`; the app's own storage clients read
# the same setting (or its identity-based `__blobServiceUri` / `__tableServiceUri` variants).
MEDIA_CONNECTION = "MEDIA_STORAGE"

# Per task slot a node's temporary disk holds the input, its MP3 and a just-finished task's files: 2 x this per
# slot (docs/deploy.md, "Disk per slot"); a Standard_D2ds_v5 (2 slots) has 75 GiB.
DEFAULT_MAX_INPUT_BYTES = 10 * 1024**3
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


class TriggerSource(str, Enum):
    POLLING = "LogsAndContainerScan"
    EVENT_GRID = "EventGrid"


class EventSink(str, Enum):
    """Where completion events go (docs/events.md)."""

    QUEUE = "queue"
    EVENT_GRID = "eventgrid"
    BOTH = "both"
    NONE = "none"


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
    queue_service_uri: str | None = None  # identity-based: the completion-events queue's service

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
    job_id: str                         # prefix of the period jobs, and the ledger's PartitionKey
    job_period: timedelta               # tasks go to one job per period (shared/job_periods.py)
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
    max_input_bytes: int                    # larger uploads are rejected: a node's disk holds input and MP3
    task_max_retries: int
    task_max_wall_clock_minutes: int
    node_sas_ttl_minutes: int
    trigger_source: TriggerSource
    events: EventsSettings

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        r = Reader(env)
        storage = _storage_connection(r)
        account_url = r.url("BATCH_ACCOUNT_URL")
        account_key = r.optional("BATCH_ACCOUNT_KEY")
        token_scope = r.optional("BATCH_TOKEN_SCOPE")
        if account_key is None and token_scope is None:
            token_scope = _derive_batch_scope(account_url)
        vm_size = r.text("POOL_VM_SIZE", "Standard_D2ds_v5")
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
            check_url("FFMPEG_BINARY_URL", ffmpeg_url)
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
            job_id=_job_prefix(r),
            job_period=r.seconds("JOB_PERIOD_SECONDS", 3600, low=60, high=7 * 24 * 3600),
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
            max_input_bytes=r.integer("MAX_INPUT_BYTES", DEFAULT_MAX_INPUT_BYTES, low=1, high=200 * 1024**4),
            task_max_retries=retries,
            task_max_wall_clock_minutes=wall_clock,
            node_sas_ttl_minutes=ttl,
            trigger_source=trigger_source(env),
            events=EventsSettings.from_env(env),
        )
        if len({settings.input_container, settings.output_container, settings.logs_container}) != 3:
            # Writing MP3s or logs into the watched container would trigger ourselves.
            raise SettingsError("OUTPUT_CONTAINER", "INPUT_CONTAINER, OUTPUT_CONTAINER and LOGS_CONTAINER must differ")
        return settings


@dataclass(frozen=True)
class EventsSettings:
    """Completion events: the sinks and where they are (docs/events.md)."""

    sink: EventSink
    queue: str | None                   # the storage queue's name when the sink includes the queue
    topic_endpoint: str | None          # the Event Grid custom topic's endpoint when it includes Event Grid
    source: str                         # the events' CloudEvents `source`: names the app

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> EventsSettings:
        r = Reader(env)
        sink = r.choice("EVENTS_SINK", EventSink, EventSink.QUEUE)
        queue = r.queue("EVENTS_QUEUE", "conversion-events")
        topic = r.optional_url("EVENTS_TOPIC_ENDPOINT")
        with_queue = sink in (EventSink.QUEUE, EventSink.BOTH)
        with_topic = sink in (EventSink.EVENT_GRID, EventSink.BOTH)
        if with_topic and topic is None:
            raise SettingsError("EVENTS_TOPIC_ENDPOINT", f"EVENTS_SINK={sink.value} needs the Event Grid topic's endpoint")
        source = r.text("EVENTS_SOURCE", "/mp4tomp3/local")
        if any(ch.isspace() for ch in source):
            raise SettingsError("EVENTS_SOURCE", f"must be a URI reference without spaces, got {source!r}")
        return cls(sink=sink, queue=queue if with_queue else None, topic_endpoint=topic if with_topic else None,
                   source=source)


@dataclass(frozen=True)
class TimerSettings:
    """The timer function's knobs (reconcile, scaling, sweep). TIMER_SCHEDULE itself is resolved by the
    Functions host (`%TIMER_SCHEDULE%` in the decorator), not here."""

    idle_grace: timedelta             # no active/running task this long -> pool to zero
    autoscale_handback: timedelta     # manual pool unchanged this long -> autoscale re-enabled
    reconcile_overlap: timedelta      # re-list this far behind the watermark (listing lag, clock skew)
    sweep_interval: timedelta         # pause between missed-upload sweep passes; completed-task cleanup cadence
    sweep_min_age: timedelta          # blobs younger than this are left to the trigger
    sweep_page_size: int              # blobs per List Blobs page (the service returns at most 5,000)
    sweep_pages_per_tick: int         # List Blobs pages one tick may read: a pass resumes next tick
    completed_task_retention: timedelta  # completed tasks stay in the job this long after their row is final
    status_heartbeat: timedelta       # status row rewritten at least this often even when nothing changed
    tick_budget: timedelta            # maintenance starts no new page or batch after this much of a tick
    reconcile_budget: timedelta       # reconcile starts no new page of changed tasks after this much of a tick

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TimerSettings:
        r = Reader(env)
        day = 24 * 3600
        return cls(
            idle_grace=r.seconds("IDLE_GRACE_SECONDS", 120, low=0, high=day),
            autoscale_handback=r.seconds("AUTOSCALE_HANDBACK_SECONDS", 300, low=0, high=day),
            reconcile_overlap=r.seconds("RECONCILE_OVERLAP_SECONDS", 120, low=0, high=3600),
            sweep_interval=r.seconds("SWEEP_INTERVAL_SECONDS", 600, low=60, high=7 * day),
            sweep_min_age=r.seconds("SWEEP_MIN_AGE_SECONDS", 300, low=0, high=day),
            sweep_page_size=r.integer("SWEEP_PAGE_SIZE", 5000, low=1, high=5000),
            sweep_pages_per_tick=r.integer("SWEEP_PAGES_PER_TICK", 2, low=1, high=100),
            completed_task_retention=r.seconds("COMPLETED_TASK_RETENTION_SECONDS", 3600, low=0, high=6 * day),
            status_heartbeat=r.seconds("STATUS_HEARTBEAT_SECONDS", 300, low=0, high=day),
            # Well inside host.json's 5-minute functionTimeout: the phases after it finish their current call.
            tick_budget=r.seconds("TICK_BUDGET_SECONDS", 120, low=5, high=240),
            # Before scaling: a backlog of changes (an outage's worth) must not delay a wake or a park.
            reconcile_budget=r.seconds("RECONCILE_BUDGET_SECONDS", 30, low=1, high=240),
        )


def trigger_source(env: Mapping[str, str]) -> TriggerSource:
    """BLOB_TRIGGER_SOURCE, read on its own: function_app.py needs it at import (decorator args)."""
    return Reader(env).choice("BLOB_TRIGGER_SOURCE", TriggerSource, TriggerSource.POLLING)


def _storage_connection(r: Reader) -> StorageConnection:
    conn = r.optional(MEDIA_CONNECTION)
    blob_uri = r.optional(f"{MEDIA_CONNECTION}__blobServiceUri") or r.optional(f"{MEDIA_CONNECTION}__serviceUri")
    table_uri = r.optional(f"{MEDIA_CONNECTION}__tableServiceUri")
    client_id = r.optional(f"{MEDIA_CONNECTION}__clientId")
    queue_uri = r.optional(f"{MEDIA_CONNECTION}__queueServiceUri")
    if conn is not None:
        return StorageConnection(conn, None, None, client_id)
    if blob_uri is None or table_uri is None:
        raise SettingsError(MEDIA_CONNECTION, (
            f"set a connection string, or identity-based {MEDIA_CONNECTION}__blobServiceUri and "
            f"{MEDIA_CONNECTION}__tableServiceUri (plus __queueServiceUri for the trigger)"))
    check_url(f"{MEDIA_CONNECTION}__blobServiceUri", blob_uri)
    check_url(f"{MEDIA_CONNECTION}__tableServiceUri", table_uri)
    if queue_uri is not None:
        check_url(f"{MEDIA_CONNECTION}__queueServiceUri", queue_uri)
    elif ".blob." in blob_uri:
        # The same account's queue service (every Azure cloud names it so); the template sets it anyway.
        queue_uri = blob_uri.replace(".blob.", ".queue.", 1)
    return StorageConnection(None, blob_uri.rstrip("/"), table_uri.rstrip("/"), client_id,
                             queue_uri.rstrip("/") if queue_uri else None)


def _job_prefix(r: Reader) -> str:
    prefix = r.batch_id("BATCH_JOB_ID", "ffmpeg-jobs")
    if len(prefix) > 48:  # the period's stamp adds 16 characters; Batch ids are at most 64
        raise SettingsError("BATCH_JOB_ID", f"{prefix!r} is longer than 48 characters (job ids add a 16-character period)")
    return prefix


def _derive_batch_scope(account_url: str) -> str:
    host = (urlsplit(account_url).hostname or "").lower()
    for suffix, scope in _BATCH_SCOPES.items():
        if host.endswith(suffix):
            return scope
    raise SettingsError("BATCH_TOKEN_SCOPE", (
        f"cannot derive the Entra ID scope for Batch endpoint host {host!r}; set BATCH_TOKEN_SCOPE "
        "(e.g. https://batch.core.windows.net//.default) or BATCH_ACCOUNT_KEY"))


def _image(r: Reader) -> ImageReference:
    raw = r.text("POOL_IMAGE", "canonical:ubuntu-24_04-lts:server:latest")
    parts = raw.split(":")
    if len(parts) != 4 or not all(parts):
        raise SettingsError("POOL_IMAGE", f"must be publisher:offer:sku:version, got {raw!r}")
    return ImageReference(*parts)


def _node_agent(r: Reader, image: ImageReference) -> str:
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


def _slots(r: Reader, vm_size: str) -> int:
    # ffmpeg's MP3 encoder is single-threaded: one task per core keeps every core busy.
    cores = vm_cores(vm_size)
    if r.optional("POOL_TASK_SLOTS_PER_NODE") is None and cores is None:
        raise SettingsError("POOL_TASK_SLOTS_PER_NODE", (
            f"cannot infer the cores of POOL_VM_SIZE {vm_size!r}; set the slots explicitly"))
    # The service caps slots at min(4 x cores, 256).
    high = min(4 * cores, 256) if cores else 256
    return r.integer("POOL_TASK_SLOTS_PER_NODE", min(cores or 1, 256), low=1, high=high)
