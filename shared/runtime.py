"""Composition root: settings, clients and services built once per worker process, lazily.

The first invocation reads and validates settings (a `SettingsError` names the bad setting and
fails that invocation, visibly, in the host's log) and builds the SDK clients; later invocations
reuse them. Worker threads may run invocations concurrently, hence the lock.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceExistsError

from . import pool_spec
from .access import Containers, NodeAccess, PoolIdentityAccess, SasAccess
from .clients import Clients, build_clients
from .gateway import AzureBatchGateway
from .ledger import TableLedger
from .log import event, get_logger
from .settings import Settings
from .submit import Submitter, limits_from

_log = get_logger("runtime")


@dataclass
class Service:
    settings: Settings
    clients: Clients
    gateway: AzureBatchGateway
    ledger: TableLedger
    access: NodeAccess
    submitter: Submitter
    _containers_ready: bool = False

    def ensure_output_containers(self) -> None:
        """Batch output files upload into existing containers only; create ours once per process."""
        if self._containers_ready:
            return
        for name in (self.settings.output_container, self.settings.logs_container):
            try:
                self.clients.blob_service.create_container(name)
            except ResourceExistsError:
                pass
            except HttpResponseError as exc:
                if exc.status_code != 403:
                    raise
                # An identity allowed to write blobs but not to create containers: the
                # infrastructure deployment owns the containers; uploads will say if one is missing.
                event(_log, logging.WARNING, "storage.container_check_skipped", container=name,
                      error=getattr(exc, "error_code", None) or "403")
        self._containers_ready = True


def build_service(settings: Settings, client_options: Mapping[str, Any] | None = None) -> Service:
    clients = build_clients(settings, client_options)
    containers = Containers(output=settings.output_container, logs=settings.logs_container)
    access: NodeAccess
    if settings.pool_identity_resource_id:
        access = PoolIdentityAccess(clients.blob_service, containers, settings.pool_identity_resource_id)
    else:
        access = SasAccess(clients.blob_service, containers, timedelta(minutes=settings.node_sas_ttl_minutes))
    gateway = AzureBatchGateway(
        clients.batch, pool_id=settings.pool_id, job_id=settings.job_id,
        pool_factory=lambda: pool_spec.build_pool(settings),
        job_factory=lambda: pool_spec.build_job(settings),
        # The data plane cannot give a pool a managed identity: infrastructure creates that pool.
        pool_managed_externally=settings.pool_identity_resource_id is not None,
    )
    ledger = TableLedger(clients.ledger_table)
    submitter = Submitter(
        gateway=gateway, ledger=ledger, access=access, job_id=settings.job_id,
        limits=limits_from(settings.mp3_quality, settings.task_max_retries, settings.task_max_wall_clock_minutes),
    )
    return Service(settings, clients, gateway, ledger, access, submitter)


_lock = threading.Lock()
_service: Service | None = None


def get_service() -> Service:
    global _service
    if _service is None:
        with _lock:
            if _service is None:
                _service = build_service(Settings.from_env(os.environ))
    return _service


def set_service(service: Service | None) -> None:
    """Install a prebuilt service (tests, the dev host) or clear it so the next call rebuilds."""
    global _service
    with _lock:
        _service = service
