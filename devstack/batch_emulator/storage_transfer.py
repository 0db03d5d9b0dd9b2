"""Blob transfers an emulated Batch node performs: resource-file downloads and output-file uploads.

Everything streams in fixed-size chunks (no whole-file reads), checks a stop callback between
chunks so a terminate or wall-clock expiry interrupts a long transfer, and reports failures as a
`TransferFailure` whose `kind` the executor maps to the service's failureInfo codes. URLs are
only ever logged or reported through `redact_url`, which drops the SAS query.
"""
from __future__ import annotations

import errno
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestTimeoutError,
    ServiceResponseTimeoutError,
)
from azure.storage.blob import (
    BlobClient,
    BlobServiceClient,
    ContainerClient,
    ContentSettings,
    StandardBlobTier,
)

from .node_metrics import record_transfer

CHUNK_BYTES = 4 * 1024 * 1024
# Storage SDK client options: small single-put/get sizes keep uploads and downloads chunked
# (the SDK otherwise buffers blobs up to 64 MiB in one request), bounded retries and timeouts.
_CLIENT_OPTIONS: dict[str, int] = {
    "max_single_put_size": CHUNK_BYTES,
    "max_block_size": CHUNK_BYTES,
    "max_single_get_size": CHUNK_BYTES,
    "max_chunk_get_size": CHUNK_BYTES,
    "retry_total": 2,
    "connection_timeout": 10,
    "read_timeout": 60,
}
_HTTP_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
# One client for every download: building one per file cost ~23 ms of CPU (a fresh TLS context),
# the emulator's top hotspot in bench item 2. httpx.Client is safe to share between threads.
_HTTP_CLIENT = httpx.Client(timeout=_HTTP_TIMEOUT, follow_redirects=True)


class _RedactRequestTargets(logging.Filter):
    """Drops query strings (a SAS) from URL arguments of HTTP client log records.

    httpx logs each request URL at INFO and urllib3 (under the Storage SDK) each request target at
    DEBUG, query included; the SDK's own logging policy already redacts, these two do not.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._redact(arg) for arg in record.args)
        return True

    @staticmethod
    def _redact(arg: object) -> object:
        if isinstance(arg, httpx.URL):
            return redact_url(str(arg))
        if isinstance(arg, str) and "?" in arg and "=" in arg.partition("?")[2]:
            return arg.partition("?")[0]
        return arg


for _logger_name in ("httpx", "urllib3.connectionpool"):
    _client_log = logging.getLogger(_logger_name)
    if not any(isinstance(existing, _RedactRequestTargets) for existing in _client_log.filters):
        _client_log.addFilter(_RedactRequestTargets())

FailureKind = Literal[
    "not_found", "access_denied", "timeout", "misc",            # remote side of a download
    "container_not_found", "upload_misc",                       # remote side of an upload
    "local_create", "local_write", "disk_full",                 # this node's file system
]
StopCheck = Callable[[], bool]


class TransferFailure(Exception):
    """A download or upload that failed; `detail` is safe to show (never carries a SAS)."""

    def __init__(self, kind: FailureKind, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind: FailureKind = kind
        self.detail = detail


class TransferInterrupted(Exception):
    """The stop callback fired mid-transfer (task terminated or wall clock expired)."""


def redact_url(url: str) -> str:
    """The URL without query or fragment: what may appear in logs and failure details."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


@dataclass(frozen=True)
class AccountKeyAccess:
    """Shared-key access to the emulator's configured storage account.

    Stands in for a pool's managed identity (identityReference) and for the Batch account's
    auto-storage account (autoStorageContainerName): both resolve to this one credential.
    """

    service: BlobServiceClient

    @classmethod
    def from_connection_string(cls, connection_string: str) -> AccountKeyAccess:
        return cls(BlobServiceClient.from_connection_string(connection_string, **_CLIENT_OPTIONS))

    def blob_client(self, blob_url: str) -> BlobClient:
        # Any SAS on the URL is dropped: the identity's key is the credential.
        return BlobClient.from_blob_url(redact_url(blob_url), credential=self.service.credential,
                                        **_CLIENT_OPTIONS)

    def container_client(self, container_url: str) -> ContainerClient:
        return ContainerClient.from_container_url(redact_url(container_url),
                                                  credential=self.service.credential, **_CLIENT_OPTIONS)

    def named_container(self, name: str) -> ContainerClient:
        return self.service.get_container_client(name)


def container_client(container_url: str, key_access: AccountKeyAccess | None) -> ContainerClient:
    """A client for a container URL: the identity's key if given, else the URL's own SAS (if any)."""
    if key_access is not None:
        return key_access.container_client(container_url)
    return ContainerClient.from_container_url(container_url, **_CLIENT_OPTIONS)


# ---------------------------------------------------------------------------------------------
# Downloads
# ---------------------------------------------------------------------------------------------

def download_url(url: str, destination: Path, stop: StopCheck,
                 key_access: AccountKeyAccess | None = None, mode: int | None = None) -> int:
    """Download one URL to `destination` (atomically replaced, permissions `mode`); returns the byte count.

    Without an identity the node agent simply GETs the URL (a blob SAS URL, a public blob or any
    other HTTP URL). With an identity it reads the blob with the identity's credential.
    """
    if key_access is not None:
        blob = key_access.blob_client(url)
        return _write_atomically(destination, lambda: _sdk_chunks(blob), stop, mode)
    return _write_atomically(destination, lambda: _http_chunks(url), stop, mode)


def list_container_blobs(container: ContainerClient, prefix: str | None) -> list[str]:
    """Names of the blobs under `prefix` (all when None), skipping directory markers."""
    try:
        return [blob.name for blob in container.list_blobs(name_starts_with=prefix or None)
                if not blob.name.endswith("/")]
    except AzureError as exc:
        raise _download_failure(exc) from exc


def download_blob(container: ContainerClient, blob_name: str, destination: Path, stop: StopCheck,
                  mode: int | None = None) -> int:
    blob = container.get_blob_client(blob_name)
    return _write_atomically(destination, lambda: _sdk_chunks(blob), stop, mode)


def _sdk_chunks(blob: BlobClient) -> Iterator[bytes]:
    try:
        downloader = blob.download_blob(max_concurrency=1)
        yield from downloader.chunks()
    except AzureError as exc:
        raise _download_failure(exc) from exc


def _http_chunks(url: str) -> Iterator[bytes]:
    try:
        with _HTTP_CLIENT.stream("GET", url) as response:
            if response.status_code >= 400:
                raise _status_failure(response.status_code, response.headers.get("x-ms-error-code"))
            # As the bytes arrive (not buffered to a chunk size) so a stop is noticed promptly.
            yield from response.iter_bytes()
    except httpx.TimeoutException as exc:
        raise TransferFailure("timeout", f"timed out reading {redact_url(url)}") from exc
    except httpx.HTTPError as exc:
        # httpx error texts can echo the request URL; report the type only.
        raise TransferFailure("misc", f"{type(exc).__name__} reading {redact_url(url)}") from exc


def _status_failure(status: int, storage_code: str | None) -> TransferFailure:
    detail = f"HTTP {status}" + (f" {storage_code}" if storage_code else "")
    if status == 404:
        return TransferFailure("not_found", detail)
    if status in (401, 403):
        return TransferFailure("access_denied", detail)
    if status in (408, 504):
        return TransferFailure("timeout", detail)
    return TransferFailure("misc", detail)


def _download_failure(exc: AzureError) -> TransferFailure:
    if isinstance(exc, (ServiceRequestTimeoutError, ServiceResponseTimeoutError)):
        return TransferFailure("timeout", type(exc).__name__)
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        return _status_failure(exc.status_code, getattr(exc, "error_code", None))
    return TransferFailure("misc", type(exc).__name__)


def _write_atomically(destination: Path, chunks: Callable[[], Iterable[bytes]], stop: StopCheck,
                      mode: int | None = None) -> int:
    """Stream chunks into a new temp file beside `destination`, set its mode, then rename it into place.

    Nothing is written through a symbolic link: the temp file is created exclusively (O_EXCL|O_NOFOLLOW), its
    mode set on the open file, and the rename replaces a link at `destination` rather than its target. (The
    caller checks that `destination`'s directory lies inside the task directory.)
    """
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.part")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0),
                     0o666)
        handle: BinaryIO = os.fdopen(fd, "wb")
    except OSError as exc:
        raise _local_failure(exc, "local_create", destination) from exc
    written = 0
    try:
        with handle:
            for chunk in chunks():
                if stop():
                    raise TransferInterrupted()
                try:
                    handle.write(chunk)
                except OSError as exc:
                    raise _local_failure(exc, "local_write", destination) from exc
                written += len(chunk)
            if mode is not None:
                try:
                    os.fchmod(handle.fileno(), mode)
                except OSError as exc:
                    raise _local_failure(exc, "local_write", destination) from exc
        try:
            os.replace(partial, destination)
        except OSError as exc:
            raise _local_failure(exc, "local_create", destination) from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    record_transfer(destination, written, inbound=True)  # the node's $NetworkInBytes
    return written


def _local_failure(exc: OSError, kind: FailureKind, path: Path) -> TransferFailure:
    if exc.errno == errno.ENOSPC:
        return TransferFailure("disk_full", f"no space left writing {path.name}")
    return TransferFailure(kind, f"{exc.strerror or type(exc).__name__} ({path.name})")


# ---------------------------------------------------------------------------------------------
# Uploads
# ---------------------------------------------------------------------------------------------

# Put Blob request headers that the Python SDK takes as typed arguments (uploadHeaders names are
# the REST header names: learn.microsoft.com/rest/api/storageservices/put-blob#request-headers).
_CONTENT_SETTING_HEADERS = {
    "content-type": "content_type", "x-ms-blob-content-type": "content_type",
    "content-encoding": "content_encoding", "x-ms-blob-content-encoding": "content_encoding",
    "content-language": "content_language", "x-ms-blob-content-language": "content_language",
    "cache-control": "cache_control", "x-ms-blob-cache-control": "cache_control",
    "content-disposition": "content_disposition", "x-ms-blob-content-disposition": "content_disposition",
}


@dataclass(frozen=True)
class UploadOptions:
    """uploadHeaders translated into the SDK's upload_blob arguments."""

    content_settings: ContentSettings | None
    metadata: dict[str, str] | None
    tier: StandardBlobTier | None
    tags: dict[str, str] | None
    extra_headers: dict[str, str]

    @classmethod
    def from_upload_headers(cls, headers: Sequence[dict]) -> UploadOptions:
        settings: dict[str, str] = {}
        metadata: dict[str, str] = {}
        extra: dict[str, str] = {}
        tier: StandardBlobTier | None = None
        tags: dict[str, str] | None = None
        for header in headers:
            name = str(header.get("name", "")).strip()
            value = str(header.get("value") or "")
            lowered = name.lower()
            if lowered in _CONTENT_SETTING_HEADERS:
                settings[_CONTENT_SETTING_HEADERS[lowered]] = value
            elif lowered.startswith("x-ms-meta-"):
                metadata[name[len("x-ms-meta-"):]] = value
            elif lowered == "x-ms-access-tier":
                tier = StandardBlobTier(value.capitalize())
            elif lowered == "x-ms-tags":
                tags = dict(parse_qsl(value))
            elif name:
                extra[name] = value
        return cls(ContentSettings(**settings) if settings else None, metadata or None, tier, tags, extra)


def upload_file(container: ContainerClient, blob_name: str, source: Path, options: UploadOptions) -> int:
    """Upload one local file as a block blob (overwriting), streamed in blocks; returns bytes.

    `source` is opened without following a symbolic link in its last component (the caller resolved and
    checked it), so a file swapped for a link after the check is refused, not read."""
    try:
        handle = os.fdopen(os.open(source, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)), "rb")
    except OSError as exc:
        raise TransferFailure("upload_misc", f"cannot read {source.name}: {exc.strerror}") from exc
    size = os.fstat(handle.fileno()).st_size
    blob = container.get_blob_client(blob_name)
    extra = {"headers": options.extra_headers} if options.extra_headers else {}
    try:
        with handle:
            blob.upload_blob(handle, length=size, overwrite=True, max_concurrency=1,
                             content_settings=options.content_settings, metadata=options.metadata,
                             standard_blob_tier=options.tier, tags=options.tags, **extra)
    except ResourceNotFoundError as exc:
        if getattr(exc, "error_code", None) == "ContainerNotFound":
            raise TransferFailure("container_not_found", "HTTP 404 ContainerNotFound") from exc
        raise TransferFailure("upload_misc", f"HTTP 404 {getattr(exc, 'error_code', '')}".strip()) from exc
    except HttpResponseError as exc:
        code = getattr(exc, "error_code", None)
        raise TransferFailure("upload_misc", f"HTTP {exc.status_code}" + (f" {code}" if code else "")) from exc
    except AzureError as exc:
        raise TransferFailure("upload_misc", type(exc).__name__) from exc
    record_transfer(source, size, inbound=False)  # the node's $NetworkOutBytes
    return size
