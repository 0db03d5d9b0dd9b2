"""Build the arguments a function declares: blob trigger values, TimerRequest, Context.

Blob parameters (see README "Blob parameter types"):
- `func.InputStream` (or unannotated): the real worker downloads the whole blob
  and wraps the bytes (azure/functions/blob.py BlobConverter.decode). The dev host
  by default passes a *metadata-only* stream instead: `.name`, `.uri`, `.length`,
  `.blob_properties`, `.metadata` are set exactly as the worker sets them, but
  `read()` raises BlobContentNotLoadedError. That keeps an app's "never read the
  MP4's bytes" promise testable. `download_blob_content=True` follows the worker.
- `bytes` / `str`: downloaded, as the worker does.
- `azurefunctions.extensions.bindings.blob` types (BlobClient, ContainerClient,
  StorageStreamDownloader): built by that extension's own converter from the same
  `model_binding_data` the host sends ({"Connection", "ContainerName", "BlobName"}),
  so the function gets exactly the client it gets on Azure; nothing is downloaded.
"""
from __future__ import annotations

import base64
import importlib
import json
import threading
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.functions import _abc as azf_abc
from azure.functions.blob import InputStream
from azure.functions.timer import TimerRequest
from azure.storage.blob import BlobClient, BlobProperties

from .discovery import BLOB_ARG_BYTES, BLOB_ARG_SDK_PREFIX, BLOB_ARG_STR, BLOB_ARG_STREAM, DiscoveredFunction
from .errors import BlobContentNotLoadedError


class MetadataOnlyInputStream(InputStream):
    """An InputStream with the worker's attributes but no content (dev-host deviation, see module doc)."""

    def __init__(self, *, name: str, uri: str, length: int | None, blob_properties: dict, metadata: dict) -> None:
        super().__init__(data=b"", name=name, uri=uri, length=length, blob_properties=blob_properties,
                         metadata=metadata)

    def _refuse(self) -> BlobContentNotLoadedError:
        return BlobContentNotLoadedError(
            f"the dev host did not download blob {self.name!r}: this function's stream is metadata-only "
            f"(.name/.uri/.length/.blob_properties/.metadata). On Azure, func.InputStream loads the whole blob "
            f"into worker memory. Run the dev host with --download-blob-content if the function must read it.")

    def read(self, size: int = -1) -> bytes:
        raise self._refuse()

    read1 = read

    def readinto(self, buffer) -> int:  # type: ignore[override]
        raise self._refuse()

    def readable(self) -> bool:
        return False


def blob_properties_dict(props: BlobProperties) -> dict[str, Any]:
    """The trigger metadata `Properties`, keyed by the .NET BlobProperties names the host serialises."""
    settings = props.content_settings
    md5 = bytes(settings.content_md5) if settings and settings.content_md5 else None
    blob_type = getattr(props.blob_type, "value", props.blob_type) or "BlockBlob"
    return {
        "LastModified": props.last_modified.isoformat() if props.last_modified else None,
        "CreatedOn": props.creation_time.isoformat() if props.creation_time else None,
        "BlobType": str(blob_type).replace("Blob", ""),
        "ContentLength": props.size,
        "ContentType": settings.content_type if settings else None,
        "ContentEncoding": settings.content_encoding if settings else None,
        "ContentHash": base64.b64encode(md5).decode() if md5 else None,
        "ETag": props.etag,
    }


def blob_argument(kind: str, connection_setting: str, client: BlobClient, props: BlobProperties,
                  download: bool) -> Any:
    trigger_path = f"{client.container_name}/{client.blob_name}"  # trigger metadata `BlobTrigger`
    if kind == BLOB_ARG_STREAM:
        common = dict(name=trigger_path, uri=client.url, length=props.size,
                      blob_properties=blob_properties_dict(props), metadata=dict(props.metadata or {}))
        if download:
            return InputStream(data=_download(client, props), **common)
        return MetadataOnlyInputStream(**common)
    if kind == BLOB_ARG_BYTES:
        return _download(client, props)
    if kind == BLOB_ARG_STR:
        return _download(client, props).decode("utf-8")
    if kind.startswith(BLOB_ARG_SDK_PREFIX):
        return sdk_blob_argument(kind[len(BLOB_ARG_SDK_PREFIX):], connection_setting, client.container_name,
                                 client.blob_name)
    raise ValueError(f"unknown blob argument kind {kind!r}")


@dataclass(frozen=True)
class _ModelBindingData:
    """The shape of the worker's ModelBindingData message (fields the converter reads)."""
    content: str
    version: str = "1.0"
    source: str = "AzureStorageBlobs"
    content_type: str = "application/json"


def sdk_blob_argument(type_name: str, connection_setting: str, container: str, blob_name: str) -> Any:
    extension = importlib.import_module("azurefunctions.extensions.bindings.blob")
    converter = importlib.import_module("azurefunctions.extensions.bindings.blob.blobClientConverter")
    datum_type = importlib.import_module("azurefunctions.extensions.base").Datum
    content = json.dumps({"Connection": connection_setting, "ContainerName": container, "BlobName": blob_name})
    datum = datum_type(value=_ModelBindingData(content), type="model_binding_data")
    return converter.BlobClientConverter.decode(datum, trigger_metadata=None, pytype=getattr(extension, type_name))


def _download(client: BlobClient, props: BlobProperties) -> bytes:
    # Pin the version that triggered the run, as the host binds to the ETag it saw.
    return client.download_blob(etag=props.etag, match_condition=MatchConditions.IfNotModified).readall()


def timer_argument(past_due: bool, schedule_status: dict | None) -> TimerRequest:
    # Real payload: {"Schedule":{"AdjustForDST":true},"ScheduleStatus":{...}|null,"IsPastDue":bool}
    return TimerRequest(past_due=past_due, schedule_status=schedule_status, schedule={"AdjustForDST": True})


@dataclass(frozen=True)
class _TraceContext(azf_abc.TraceContext):
    trace_parent: str = ""
    trace_state: str = ""
    attributes: dict = None  # type: ignore[assignment]


@dataclass(frozen=True)
class _RetryContext(azf_abc.RetryContext):
    retry_count: int = 0
    max_retry_count: int = 0
    exception: Any = None


class InvocationContext(azf_abc.Context):
    """The `context` parameter the worker passes to functions that declare one."""

    def __init__(self, function: DiscoveredFunction, invocation_id: str, retry_count: int = 0,
                 max_retry_count: int = 0) -> None:
        self._function = function
        self._invocation_id = invocation_id
        self._retry = _RetryContext(retry_count=retry_count, max_retry_count=max_retry_count)
        self._trace = _TraceContext(attributes={})
        self._thread_local = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self):
        return self._thread_local

    @property
    def function_name(self) -> str:
        return self._function.name

    @property
    def function_directory(self) -> str:
        return str(self._function.script_dir)

    @property
    def trace_context(self) -> azf_abc.TraceContext:
        return self._trace

    @property
    def retry_context(self) -> azf_abc.RetryContext:
        return self._retry
