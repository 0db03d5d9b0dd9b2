"""The Batch task for one blob version: download, ffmpeg to MP3, upload — no user text in a shell.

- The input arrives by resource file at the fixed local name `input.mp4`; the MP3 is written to
  the fixed local name `output.mp3` and uploaded by output file to the mapped blob path. The
  command line is a constant except for the integer quality, so no blob name ever reaches
  `/bin/sh` (the tutorial pasted names unquoted into `bash -c`).
- The command is shared/ffmpeg.py's. Its log (`ffmpeg.log`) and the task's stderr are uploaded to
  the logs container under `<task id>/` on failure only (`log_blob_names`).
- Bounded: maxTaskRetryCount (retries only follow a non-zero exit) and maxWallClockTime; the node drops the
  task's files (input, MP3) a minute after it ends (retentionTime), not after Batch's default 7 days.
- The output blob carries metadata naming its source (percent-encoded name, or `source_name_b64`
  when that would not fit the 8 KiB metadata limit; ETag; task id), the options it was made with
  (`mp3_bitrate` or `mp3_quality`, `mp3_channels`, `mp3_samplerate`, `mp3_loudnorm`: shared/options.py) and the
  content type audio/mpeg, all set by the output file's upload headers (Batch sends them with the Put Blob
  of the upload, and `x-ms-meta-*` is a Put Blob header), so the MP3 is never written without them.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote

from azure.batch import models as batch_models

from .access import TaskStorageAccess
from .ffmpeg import INPUT_FILE, LOG_FILE, OUTPUT_FILE, command_line
from .options import ConversionOptions

# filePattern is relative to the task working directory (wd/); the agent writes stdout.txt and
# stderr.txt one level up, which Microsoft's output-files article uploads as `../std*.txt`.
TASK_STDERR = "../stderr.txt"
STDERR_BLOB = "stderr.txt"
# Metadata names must be C# identifiers (no hyphens); values are ASCII header text.
META_SOURCE_NAME = "source_name"
META_SOURCE_NAME_B64 = "source_name_b64"
META_SOURCE_CONTAINER = "source_container"
META_SOURCE_ETAG = "source_etag"
META_TASK_ID = "batch_task_id"
# Blob metadata is capped at 8 KiB in total. Percent-encoding a legal name (<= 1,024 UTF-16 units) can
# reach 9,216 characters (1,024 CJK x 9); such a name goes as base64 of its UTF-8 instead, which is at
# most 4,096 characters (3,072 bytes), so every MP3 names its source.
_MAX_ENCODED_NAME = 4096


@dataclass(frozen=True)
class TaskRequest:
    task_id: str
    input_container: str
    input_name: str
    input_etag: str
    output_name: str
    options: ConversionOptions | None = None   # None: the app's defaults (MP3_QUALITY)


@dataclass(frozen=True)
class TaskLimits:
    mp3_quality: int
    max_retries: int
    max_wall_clock: timedelta
    # How long the node keeps the task's directory (the input, the MP3) once the task has ended - its outputs
    # and logs are uploaded before it ends. Batch's default is 7 days of users' media on the node's disk.
    node_files_retention: timedelta = timedelta(minutes=1)


def log_blob_names(task_id: str) -> tuple[str, str]:
    """Where a failed task's ffmpeg log and stderr land in the logs container, most telling first."""
    return f"{task_id}/{LOG_FILE}", f"{task_id}/{STDERR_BLOB}"


def source_metadata_headers(request: TaskRequest, mp3_quality: int | None = None) -> list[batch_models.OutputFileUploadHeader]:
    encoded = quote(request.input_name, safe="/")
    meta = {
        META_SOURCE_CONTAINER: request.input_container,
        META_SOURCE_ETAG: request.input_etag,
        META_TASK_ID: request.task_id,
    }
    if len(encoded) <= _MAX_ENCODED_NAME:
        meta[META_SOURCE_NAME] = encoded
    else:
        meta[META_SOURCE_NAME_B64] = base64.b64encode(request.input_name.encode("utf-8")).decode("ascii")
    if mp3_quality is not None:
        meta.update((request.options or ConversionOptions()).resolved(mp3_quality).as_metadata())
    headers = [batch_models.OutputFileUploadHeader(name="x-ms-blob-content-type", value="audio/mpeg")]
    headers += [batch_models.OutputFileUploadHeader(name=f"x-ms-meta-{k}", value=v) for k, v in meta.items()]
    return headers


def build_task(request: TaskRequest, access: TaskStorageAccess, limits: TaskLimits) -> batch_models.BatchTaskCreateOptions:
    identity = (batch_models.BatchNodeIdentityReference(resource_id=access.identity_resource_id)
                if access.identity_resource_id else None)

    def to_container(url: str, path: str, headers: list | None = None) -> batch_models.OutputFileDestination:
        return batch_models.OutputFileDestination(container=batch_models.OutputFileBlobContainerDestination(
            container_url=url, path=path, identity_reference=identity, upload_headers=headers))

    on_success = batch_models.OutputFileUploadConfiguration(upload_condition="tasksuccess")
    on_failure = batch_models.OutputFileUploadConfiguration(upload_condition="taskfailure")
    log_blob, stderr_blob = log_blob_names(request.task_id)
    return batch_models.BatchTaskCreateOptions(
        id=request.task_id,
        display_name=request.input_name[:1024],
        command_line=command_line(limits.mp3_quality, request.options),
        resource_files=[batch_models.ResourceFile(
            http_url=access.input_url, file_path=INPUT_FILE, identity_reference=identity)],
        output_files=[
            batch_models.OutputFile(
                file_pattern=OUTPUT_FILE,
                destination=to_container(access.output_container_url, request.output_name,
                                         source_metadata_headers(request, limits.mp3_quality)),
                upload_options=on_success),
            batch_models.OutputFile(
                file_pattern=LOG_FILE,
                destination=to_container(access.logs_container_url, log_blob),
                upload_options=on_failure),
            batch_models.OutputFile(
                file_pattern=TASK_STDERR,
                destination=to_container(access.logs_container_url, stderr_blob),
                upload_options=on_failure),
        ],
        # Said explicitly, not left to the default: ffmpeg parses untrusted uploads, so it runs as a
        # task-scoped, non-admin user that cannot touch the node or other tasks' files.
        user_identity=batch_models.UserIdentity(auto_user=batch_models.AutoUserSpecification(
            scope="task", elevation_level="nonadmin")),
        constraints=batch_models.BatchTaskConstraints(
            max_wall_clock_time=limits.max_wall_clock, max_task_retry_count=limits.max_retries,
            retention_time=limits.node_files_retention),
    )
