"""The host's HTTP surface: the blob extension's Event Grid webhook and a status endpoint.

`POST /runtime/webhooks/blobs?functionName=Host.Functions.<name>&code=<blobs_extension key>`
behaves like the storage extension's handler (BlobsExtensionConfigProvider.ConvertAsync + the
Event Grid HttpRequestProcessor), behind the system-key check Azure applies to
`/runtime/webhooks/<extension>`: no key or a wrong one -> 401 (before anything else, so
function names can't be probed); header `aeg-event-type: SubscriptionValidation` -> 200
`{"validationResponse": code}`; `Notification` -> queue each BlobCreated and answer 202
Accepted; `Unsubscribe` -> 202; no `aeg-event-type` header -> 400, as Azure answers.
Differences (see README): events other than BlobCreated are ignored instead of being
queued and dropped later; bad bodies get 400 instead of an exception. Every route sits
behind `security.LocalOnlyMiddleware` (loopback Host only, no browser-originated requests).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .blobs import BlobFunction
from .discovery import FUNCTION_ID_PREFIX
from .events import (BLOB_CREATED, BlobCreated, MalformedDelivery, blob_created,
                     parse_delivery, validation_code)
from .logs import get_logger
from .security import KEY_HEADER, KEY_QUERY_PARAMETER, LocalOnlyMiddleware, WebhookKey

log = get_logger("webhook")

EVENT_TYPE_HEADER = "aeg-event-type"
BlobCreatedHandler = Callable[[BlobFunction, BlobCreated], bool]


def _problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(event_grid_functions: Mapping[str, BlobFunction], all_function_names: Mapping[str, str],
               on_blob_created: BlobCreatedHandler, host_id: str, webhook_key: WebhookKey) -> Starlette:
    """`event_grid_functions` and `all_function_names` are keyed by lower-cased function name."""

    def unauthorized(request: Request) -> Response | None:
        presented = request.query_params.get(KEY_QUERY_PARAMETER) or request.headers.get(KEY_HEADER)
        if webhook_key.matches(presented):
            return None
        log.warning("refused a webhook call: %s blobs_extension key", "wrong" if presented else "no",
                    extra={"event": "eventgrid.unauthorized", "key_presented": bool(presented)})
        return _problem(401, f"the webhook needs ?{KEY_QUERY_PARAMETER}=<blobs_extension key> "
                             f"(see devstack/devhost/README.md)")

    def lookup(request: Request) -> BlobFunction | Response:
        requested = request.query_params.get("functionName")
        if not requested:
            return _problem(400, "query parameter functionName=Host.Functions.<name> is required")
        name = requested[len(FUNCTION_ID_PREFIX):] if requested.lower().startswith(FUNCTION_ID_PREFIX.lower()) \
            else requested
        fn = event_grid_functions.get(name.lower())
        if fn is None:
            if name.lower() in all_function_names:
                return _problem(404, f"function {all_function_names[name.lower()]!r} is not a blob trigger with "
                                     f"source=EventGrid")
            return _problem(404, f"no function named {name!r}")
        return fn

    async def blobs_webhook(request: Request) -> Response:
        refused = unauthorized(request)
        if refused is not None:
            return refused
        found = lookup(request)
        if isinstance(found, Response):
            return found
        fn = found
        header = (request.headers.get(EVENT_TYPE_HEADER) or "").strip().lower()
        if header == "":
            log.warning("Event Grid delivery without the %s header; answered 400 as the Azure host does",
                        EVENT_TYPE_HEADER, extra={"event": "eventgrid.no_header", "function": fn.name})
            return _problem(400, f"the {EVENT_TYPE_HEADER} header is required "
                                 f"(SubscriptionValidation or Notification, as Event Grid sends)")
        if header == "unsubscribe":
            return Response(status_code=202)
        if header not in ("subscriptionvalidation", "notification"):
            return _problem(400, f"unknown {EVENT_TYPE_HEADER} header {header!r}")
        try:
            events = parse_delivery(await request.body())
            if header == "subscriptionvalidation":
                code = validation_code(events)
                log.info("performed Event Grid handshake for %s", fn.name,
                         extra={"event": "eventgrid.handshake", "function": fn.name})
                return JSONResponse({"validationResponse": code})
            # Validate the whole batch before queuing any of it: a 400 makes Event Grid retry it all.
            created = [blob_created(e, i) for i, e in enumerate(events) if e.event_type == BLOB_CREATED]
        except MalformedDelivery as exc:
            log.warning("rejected Event Grid delivery for %s: %s", fn.name, exc,
                        extra={"event": "eventgrid.malformed", "function": fn.name})
            return _problem(400, str(exc))
        ignored = len(events) - len(created)
        queued = sum(1 for event in created if on_blob_created(fn, event))
        log.info("Event Grid delivery for %s: %d event(s), %d queued, %d other event type(s) ignored", fn.name,
                 len(events), queued, ignored,
                 extra={"event": "eventgrid.delivery", "function": fn.name, "events": len(events),
                        "queued": queued, "ignored": ignored})
        return Response(status_code=202)

    async def blobs_webhook_options(request: Request) -> Response:
        # CloudEvents 1.0 webhook abuse protection (Event Grid's CloudEvents handshake); Event Grid
        # sends it to the subscription's URL, key included.
        refused = unauthorized(request)
        if refused is not None:
            return refused
        origin = request.headers.get("webhook-request-origin", "*")
        return Response(status_code=200, headers={"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*"})

    async def host_status(request: Request) -> Response:
        return JSONResponse({"id": host_id, "state": "Running"})

    return Starlette(routes=[
        Route("/runtime/webhooks/blobs", blobs_webhook, methods=["POST"]),
        Route("/runtime/webhooks/blobs", blobs_webhook_options, methods=["OPTIONS"]),
        Route("/admin/host/status", host_status, methods=["GET"]),
    ], middleware=[Middleware(LocalOnlyMiddleware)])
