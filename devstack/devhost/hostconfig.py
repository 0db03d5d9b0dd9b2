"""The parts of host.json the dev host honours."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import DevHostError


@dataclass(frozen=True)
class HostOptions:
    # extensions.queues.maxDequeueCount: attempts before a blob goes to the poison queue
    # (blob trigger docs, "Poison blobs"; default 5).
    max_dequeue_count: int = 5
    # extensions.queues.messageEncoding: how queue messages are written (default base64,
    # QueuesOptions.MessageEncoding; the blob extension's QueueServiceClientProvider uses it).
    message_encoding: str = "base64"
    # extensions.blobs.maxDegreeOfParallelism: concurrent blob invocations
    # (BlobsOptions default: 8 * processor count).
    max_degree_of_parallelism: int = 8 * (os.cpu_count() or 1)


def _section(document: dict, *keys: str) -> dict:
    node = document
    for key in keys:
        # host.json keys are case-insensitive (.NET configuration)
        node = next((v for k, v in node.items() if k.lower() == key.lower() and isinstance(v, dict)), {})
    return node


def _get(section: dict, key: str):
    return next((v for k, v in section.items() if k.lower() == key.lower()), None)


def load_host_options(app_dir: Path) -> HostOptions:
    path = app_dir / "host.json"
    if not path.exists():
        raise DevHostError(f"{path} is missing; a Functions app needs host.json at its root")
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise DevHostError(f"{path} is not valid JSON: {exc}") from exc
    defaults = HostOptions()
    queues = _section(document, "extensions", "queues")
    blobs = _section(document, "extensions", "blobs")
    dequeue = _get(queues, "maxDequeueCount")
    encoding = _get(queues, "messageEncoding")
    parallelism = _get(blobs, "maxDegreeOfParallelism")
    options = HostOptions(
        max_dequeue_count=int(dequeue) if dequeue is not None else defaults.max_dequeue_count,
        message_encoding=str(encoding).lower() if encoding is not None else defaults.message_encoding,
        max_degree_of_parallelism=int(parallelism) if parallelism is not None else defaults.max_degree_of_parallelism,
    )
    if options.max_dequeue_count < 1 or options.max_degree_of_parallelism < 1:
        raise DevHostError(f"{path}: maxDequeueCount and maxDegreeOfParallelism must be at least 1")
    if options.message_encoding not in ("base64", "none"):
        raise DevHostError(f"{path}: extensions.queues.messageEncoding must be 'base64' or 'none'")
    return options
