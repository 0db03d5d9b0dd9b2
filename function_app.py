"""Azure Functions entry point: decorators only; the work lives in `shared/`.

Blob trigger source: BLOB_TRIGGER_SOURCE (read here, at import, because decorator arguments are
fixed when the worker indexes functions). `LogsAndContainerScan` (default, polling) suits
Consumption/Premium/Dedicated plans and the local dev host; `EventGrid` needs an Event Grid
subscription (BlobCreated -> /runtime/webhooks/blobs?functionName=Host.Functions.process_upload)
and is the only source Flex Consumption supports — deploy that one in Azure.
"""
import os

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob

from shared import handlers, settings

app = func.FunctionApp()


@app.function_name("process_upload")
@app.blob_trigger(arg_name="client", path="%INPUT_CONTAINER%/{name}", connection=settings.MEDIA_CONNECTION,
                  source=settings.trigger_source(os.environ).value)
def process_upload(client: blob.BlobClient) -> None:
    handlers.on_blob(client)


@app.function_name("reconcile_and_scale")
@app.timer_trigger(schedule="%TIMER_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def reconcile_and_scale(timer: func.TimerRequest) -> None:
    handlers.on_timer(timer)
