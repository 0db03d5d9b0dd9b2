"""A failed task's reason, read from the logs it uploaded to the logs container (ffmpeg.log, else its
stderr): only the head of each blob, turned into plain words by shared/ffmpeg.py."""
from __future__ import annotations

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from . import ffmpeg
from .task_spec import log_blob_names

_LOG_READ_BYTES = 16 * 1024


class BlobFailureLog:
    def __init__(self, blob_service: BlobServiceClient, logs_container: str) -> None:
        self._container = blob_service.get_container_client(logs_container)

    def error_line(self, task_id: str) -> str | None:
        for name in log_blob_names(task_id):
            text = self._head(name)
            reason = ffmpeg.reason(text) if text else None
            if reason:
                return reason
        return None

    def _head(self, blob_name: str) -> str | None:
        try:
            data = self._container.get_blob_client(blob_name).download_blob(offset=0, length=_LOG_READ_BYTES).readall()
        except (ResourceNotFoundError, HttpResponseError):
            return None
        return data.decode("utf-8", "replace")
