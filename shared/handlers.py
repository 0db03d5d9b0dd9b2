"""What function_app.py's decorators call: each takes the host's binding and runs one invocation on the
process's services (shared/runtime.py)."""
from __future__ import annotations

from typing import Any

from azure.storage.blob import BlobClient

from . import runtime
from .submit import Outcome
from .tick import TickReport, run_tick
from .trigger import blob_version


def on_blob(client: BlobClient) -> Outcome:
    """Blob trigger: one blob version -> one task (or a skipped/rejected row).

    Bad input never raises (it gets a row). What raises is the infrastructure (Batch or storage unreachable
    after the SDK's retries): the upload is then remembered for the timer before the host gets the failure,
    so it is submitted by the first tick after the service is back, whatever the host's retries do."""
    service = runtime.get_service()
    try:
        version = blob_version(client)
        service.ensure_output_containers()
        return service.submitter.handle(version)
    except Exception as exc:
        service.pending.remember(client.container_name, client.blob_name, exc)
        raise


def on_timer(timer: Any) -> TickReport:
    """Timer trigger (`timer` is an azure.functions.TimerRequest)."""
    return run_tick(runtime.get_timer_service(), timer)
