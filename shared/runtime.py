"""The composition root: settings, SDK clients and both services, built once per worker process.

`get_service()` (the blob trigger) builds the settings, the clients, the Batch and ledger owners and
the submitter; `get_timer_service()` adds the timer's parts on top of that same service, so a process
running both functions holds one BatchClient, one TableClient and one BlobServiceClient. The first
invocation reads and validates settings (a `SettingsError` names the bad setting and fails that
invocation, visibly, in the host's log); later invocations reuse everything. Worker threads may run
invocations concurrently, hence the lock.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from . import pool_spec
from .access import Containers, NodeAccess, PoolIdentityAccess, SasAccess
from .batch import AzureBatch
from .clients import Clients, build_clients
from .clock import utc_now
from .failure_logs import BlobFailureLog
from .job_periods import JobPeriods
from .ledger import Ledger
from .liveness import LivenessAudit
from .newest_wins import NewestWins
from .publish import EventGridSink, EventPublisher, QueueSink, Sink
from .log import event, get_logger
from .reconcile import Reconciler
from .recovery import PendingUploads, Resubmitter
from .scaling import ScalingPolicy
from .settings import Settings, TimerSettings
from .status import StatusStore
from .submit import Submitter, limits_from
from .sweep import Sweeper
from .tick import TimerService
from .trigger import version_metadata

_log = get_logger("runtime")


@dataclass
class Service:
    settings: Settings
    clients: Clients
    batch: AzureBatch
    ledger: Ledger
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

    def reset_containers(self) -> None:
        """A task found a container missing: forget that ours were made, and make them again."""
        self._containers_ready = False
        self.ensure_output_containers()

    @cached_property
    def pending(self) -> PendingUploads:
        """Uploads whose trigger failed: the trigger remembers them, the timer retries them (one object for both)."""
        return PendingUploads(ledger=self.ledger, submitter=self.submitter, blob_service=self.clients.blob_service,
                              ensure_containers=self.ensure_output_containers, clock=utc_now)


def build_service(settings: Settings, client_options: Mapping[str, Any] | None = None) -> Service:
    clients = build_clients(settings, client_options)
    containers = Containers(output=settings.output_container, logs=settings.logs_container)
    access: NodeAccess
    if settings.pool_identity_resource_id:
        access = PoolIdentityAccess(clients.blob_service, containers, settings.pool_identity_resource_id)
    else:
        access = SasAccess(clients.blob_service, containers, timedelta(minutes=settings.node_sas_ttl_minutes))
    batch = AzureBatch(
        clients.batch, pool_id=settings.pool_id, jobs=JobPeriods(settings.job_id, settings.job_period),
        pool_factory=lambda: pool_spec.build_pool(settings),
        job_factory=lambda job_id: pool_spec.build_job(settings, job_id),
        # The data plane cannot give a pool a managed identity: infrastructure creates that pool.
        pool_managed_externally=settings.pool_identity_resource_id is not None,
        priority=settings.node_priority,
        autoscale_formula=pool_spec.autoscale_formula(settings.task_slots_per_node, settings.max_nodes,
                                                      settings.node_priority),
        autoscale_interval=timedelta(minutes=settings.autoscale_interval_minutes),
    )
    # Completion events on: rows going final bring their outbox marker (shared/publish.py).
    ledger = Ledger(clients.ledger_table, settings.job_id,
                    outbox=clients.events_queue is not None or clients.events_topic is not None)
    submitter = Submitter(
        batch=batch, ledger=ledger, access=access, jobs=batch.jobs,
        limits=limits_from(settings.mp3_quality, settings.task_max_retries, settings.task_max_wall_clock_minutes),
        input_exists=lambda container, name: clients.blob_service.get_blob_client(container, name).exists(),
        max_input_bytes=settings.max_input_bytes,
        read_metadata=lambda blob: version_metadata(clients.blob_service.get_blob_client(blob.container, blob.name),
                                                    blob.etag or ""),
    )
    return Service(settings, clients, batch, ledger, access, submitter)


def build_publisher(service: Service, clock: Callable[[], datetime] = utc_now) -> EventPublisher | None:
    """The completion events' publisher on the configured sinks (EVENTS_SINK), or None when events are off."""
    clients, app = service.clients, service.settings
    sinks: list[Sink] = []
    if clients.events_queue is not None:
        sinks.append(QueueSink(clients.events_queue))
    if clients.events_topic is not None:
        sinks.append(EventGridSink(clients.events_topic))
    if not sinks:
        return None

    def output_size(name: str) -> int | None:
        try:
            return clients.blob_service.get_blob_client(app.output_container, name).get_blob_properties().size
        except ResourceNotFoundError:
            return None

    return EventPublisher(ledger=service.ledger, sinks=sinks, source=app.events.source,
                          output_container=app.output_container, output_size=output_size, clock=clock)


def build_timer_service(service: Service, settings: TimerSettings, *, clock: Callable[[], datetime] = utc_now,
                        sleep: Callable[[float], None] = time.sleep) -> TimerService:
    """The timer's parts, on the service's clients and Batch/ledger owners."""
    app, clients = service.settings, service.clients
    reconciler = Reconciler(
        tasks=service.batch, ledger=service.ledger, overlap=settings.reconcile_overlap,
        failure_log=BlobFailureLog(clients.blob_service, app.logs_container),
        output_url=lambda name: clients.blob_service.get_blob_client(app.output_container, name).url,
        clock=clock)
    sweeper = Sweeper(blob_service=clients.blob_service, input_container=app.input_container, ledger=service.ledger,
                      submit=service.submitter.handle, clock=clock, min_age=settings.sweep_min_age,
                      page_size=settings.sweep_page_size, pages_per_tick=settings.sweep_pages_per_tick)
    policy = ScalingPolicy(max_nodes=app.max_nodes, idle_grace=settings.idle_grace,
                           autoscale_handback=settings.autoscale_handback)
    resubmitter = Resubmitter(ledger=service.ledger, submitter=service.submitter, blob_service=clients.blob_service,
                              delete_task=service.batch.delete_task, terminate_task=service.batch.terminate_task,
                              reset_containers=service.reset_containers, clock=clock)
    audit = LivenessAudit(ledger=service.ledger, tasks=service.batch, reconciler=reconciler, resubmitter=resubmitter,
                          clock=clock)
    newest = NewestWins(blob_service=clients.blob_service, output_container=app.output_container,
                        ledger=service.ledger, tasks=service.batch, jobs=service.batch.jobs, resubmitter=resubmitter,
                        clock=clock)
    return TimerService(settings=settings, policy=policy, monitor=service.batch, reconciler=reconciler,
                        status=StatusStore(service.ledger, heartbeat=settings.status_heartbeat),
                        sweeper=sweeper, resubmitter=resubmitter, pending=service.pending, audit=audit,
                        newest=newest,
                        pool_id=app.pool_id, jobs=service.batch.jobs,
                        ensure_containers=service.ensure_output_containers, clock=clock, sleep=sleep,
                        events=build_publisher(service, clock))


_lock = threading.RLock()
_service: Service | None = None
_timer_service: TimerService | None = None


def get_service() -> Service:
    global _service
    if _service is None:
        with _lock:
            if _service is None:
                _service = build_service(Settings.from_env(os.environ))
    return _service


def get_timer_service() -> TimerService:
    global _timer_service
    if _timer_service is None:
        with _lock:
            if _timer_service is None:
                _timer_service = build_timer_service(get_service(), TimerSettings.from_env(os.environ))
    return _timer_service


def set_service(service: Service | None) -> None:
    """Install a prebuilt service (tests, the dev host) or clear it so the next call rebuilds."""
    global _service
    with _lock:
        _service = service


def set_timer_service(timer_service: TimerService | None) -> None:
    """Install a prebuilt timer service (tests, the dev host) or clear it so the next tick rebuilds."""
    global _timer_service
    with _lock:
        _timer_service = timer_service
