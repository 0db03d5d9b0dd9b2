"""HTTP plumbing shared by the handlers: the front door (request ids, authentication, api-version), operation
wrapper (stats, fault injection, error formatting), body parsing and the service's response headers.

Headers follow research of the real service (recorded SDK test sessions): every response carries `request-id`,
`DataServiceVersion: 3.0` and echoes `client-request-id`; reads/writes of a resource carry `ETag` and
`Last-Modified`; creates/updates carry `DataServiceId` (the resource URL); JSON bodies are
`application/json;odata=minimalmetadata` with an `odata.metadata` link.
"""
from __future__ import annotations

import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any, Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import access, errors
from .auth import Authenticator, RequestFacts
from .faults import FaultInjector
from .stats import RequestStats
from .timeutil import parse_iso, parse_rfc1123, rfc1123, utcnow

log = logging.getLogger("devstack.batch_emulator.http")

JSON_TYPE = "application/json;odata=minimalmetadata"
MAX_BODY_BYTES = 4 * 1024 * 1024  # far above any Batch payload limit; protects the emulator itself
ADMIN_PREFIX = "/_emulator"
# api-versions of the Batch data plane clients send: YYYY-MM-DD.major.minor up to 2024-07-01.20.0, then the
# date-only TypeSpec versions (azure-batch 15.1 sends 2025-06-01). Older SDKs and the az CLI send the former.
_API_VERSION_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(\.\d{1,3}\.\d{1,3})?$")
# "Batch API status" (learn.microsoft.com/rest/api/batchservice/batch-api-status): versions up to 2017-09-01.6.0
# were removed; "all Batch service API versions newer than September 2017 are available". azure-batch 4.1.3 (the
# ffmpeg tutorial's era) sends 2018-03-01.6.1.
REMOVED_THROUGH = date(2017, 9, 1)
NEWEST_API_VERSION = "2025-06-01"   # what azure-batch 15.1.0 sends; the default when a handler needs one


def check_api_version(value: str | None, today: date | None = None) -> str:
    """Accept any well-formed, real, dated version the service could have published (newer than the removed
    ones, not dated after today), so SDKs and tools newer or older than the one the emulator was built with
    work; reject malformed or impossible versions with the service's 400 codes."""
    if not value:
        raise errors.missing_required_query_parameter("api-version")
    m = _API_VERSION_RE.match(value)
    try:
        published = date(int(m[1]), int(m[2]), int(m[3])) if m else None
    except ValueError:  # 2024-13-45
        published = None
    if published is None:
        raise errors.invalid_query_parameter("api-version", value, "The api-version is not in a valid format.")
    if not (REMOVED_THROUGH < published <= (today or utcnow().date())):
        raise errors.unsupported_request_version(value)
    return value


def base_url(scope: Scope) -> str:
    host = ""
    for name, value in scope["headers"]:
        if name == b"host":
            host = value.decode("latin-1")
            break
    if not host or not access.is_loopback_host(host):  # never echo a refused Host into a link
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{host}"


def error_response(exc: errors.BatchError, scope: Scope, request_id: str) -> Response:
    now = utcnow()
    headers = {**exc.headers}
    if scope.get("method") == "HEAD" or exc.status == 304:
        return Response(status_code=exc.status, headers=headers)
    body = json.dumps(exc.body(base_url(scope), request_id, now), separators=(",", ":")).encode()
    return Response(content=body, status_code=exc.status, headers=headers, media_type=JSON_TYPE)


class FrontDoor:
    """Pure ASGI middleware in front of every route: the access policy (access.py: loopback Host, no web pages,
    admin header) for Batch and /_emulator routes alike; then, for Batch routes, ids, authentication,
    api-version and the common headers."""

    def __init__(self, app: ASGIApp, admin: ASGIApp, authenticator: Authenticator, stats: RequestStats) -> None:
        self.app = app
        self.admin = admin
        self.auth = authenticator
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # no Batch or admin route is a websocket
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        admin = scope["path"].startswith(ADMIN_PREFIX)
        try:
            access.check_request(scope.get("headers") or [], admin=admin)
        except errors.BatchError as exc:  # not loopback by name, sent by a web page, admin header missing
            if not admin:
                self.stats.record("Refused", exc.status)
            log.warning("refused %s %s: %s %s", scope["method"], scope["path"], exc.code,
                        "; ".join(f"{k}={v}" for k, v in exc.values))
            await error_response(exc, scope, str(uuid.uuid4()))(scope, receive, send)
            return
        if admin:
            await self.admin(scope, receive, send)
            return
        request_id = str(uuid.uuid4())
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        scope.setdefault("state", {})
        scope["state"]["request_id"] = request_id
        client_request_id = headers.get("client-request-id")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"request-id", request_id.encode()), (b"dataserviceversion", b"3.0")]
                if client_request_id:
                    extra.append((b"client-request-id", client_request_id.encode("latin-1")))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            raw_path = scope.get("raw_path") or scope["path"].encode()
            facts = RequestFacts(method=scope["method"], raw_path=raw_path.decode("latin-1"),
                                 query_string=scope.get("query_string", b"").decode("latin-1"), headers=headers)
            self.auth.authenticate(facts, utcnow())
            api_version = None
            for part in facts.query_string.split("&"):
                name, _, value = part.partition("=")
                if name == "api-version":
                    api_version = value
                    break
            scope["state"]["api_version"] = check_api_version(api_version)
        except errors.BatchError as exc:
            self.stats.record("AuthenticationFailed" if exc.code == "AuthenticationFailed" else "Rejected",
                              exc.status)
            log.info("rejected %s %s: %s", scope["method"], scope["path"], exc.code)
            await error_response(exc, scope, request_id)(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


@dataclass(frozen=True)
class OpContext:
    """What handlers get besides the request."""

    request: Request
    request_id: str
    api_version: str
    base_url: str

    def query(self, name: str) -> str | None:
        # Query option names are case-insensitive in practice ($filter vs $Filter); exact match first.
        params = self.request.query_params
        if name in params:
            return params[name]
        lowered = name.lower()
        for key, value in params.items():
            if key.lower() == lowered:
                return value
        return None

    async def body_bytes(self) -> bytes:
        declared = self.request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise errors.request_body_too_large(f"The request body is {declared} bytes.")
        data = await self.request.body()
        if len(data) > MAX_BODY_BYTES:
            raise errors.request_body_too_large(f"The request body is {len(data)} bytes.")
        return data

    async def json(self, *, optional: bool = False) -> Any:
        data = await self.body_bytes()
        if not data.strip():
            if optional:
                return None
            raise errors.invalid_request_body("The request body is empty.")
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise errors.invalid_request_body("The request body is not valid JSON.") from None

    def check_conditions(self, doc: Mapping[str, Any], *, write: bool) -> None:
        """If-Match / If-None-Match / If-(Un)Modified-Since against the resource's eTag/lastModified."""
        h = self.request.headers
        etag = doc.get("eTag")
        if_match = h.get("if-match")
        if if_match and if_match != "*" and if_match.strip('"') != etag:
            raise errors.condition_not_met(412)
        if_none_match = h.get("if-none-match")
        if if_none_match and (if_none_match == "*" or if_none_match.strip('"') == etag):
            raise errors.condition_not_met(412 if write else 304)
        modified = doc.get("lastModified")
        if modified:
            last = parse_iso(modified).replace(microsecond=0)
            since = h.get("if-modified-since")
            if since and last <= parse_rfc1123(since):
                raise errors.condition_not_met(412 if write else 304)
            unmodified = h.get("if-unmodified-since")
            if unmodified and last > parse_rfc1123(unmodified):
                raise errors.condition_not_met(412)


Handler = Callable[[OpContext], Awaitable[Response]]


def operation(name: str, handler: Handler, stats: RequestStats, faults: FaultInjector,
              head_name: str | None = None) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler: count it, maybe inject throttling, format BatchErrors, never leak a crash."""

    async def endpoint(request: Request) -> Response:
        op = head_name if (head_name and request.method == "HEAD") else name
        state = request.scope.get("state", {})
        request_id = state.get("request_id") or str(uuid.uuid4())
        ctx = OpContext(request, request_id, state.get("api_version", NEWEST_API_VERSION), base_url(request.scope))
        started = time.perf_counter()
        try:
            injected = faults.check(op)
            if injected is not None:
                raise injected
            response = await handler(ctx)
        except errors.BatchError as exc:
            stats.record(op, exc.status)
            if exc.status >= 500 and exc.code not in ("ServerBusy", "TooManyRequests", "NotImplemented"):
                log.warning("%s failed: %s", op, exc)
            return error_response(exc, request.scope, request_id)
        except Exception:  # a bug in the emulator: answer like the service's InternalError, log the stack
            log.exception("internal error in %s %s", request.method, request.url.path)
            stats.record(op, 500)
            return error_response(errors.internal_error(), request.scope, request_id)
        stats.record(op, response.status_code)
        if log.isEnabledFor(logging.DEBUG):  # path only: Batch URLs carry no secrets, query strings may be long
            log.debug("op=%s method=%s path=%s status=%d ms=%.1f request_id=%s", op, request.method,
                      request.url.path, response.status_code, (time.perf_counter() - started) * 1000, request_id)
        return response
    endpoint.__name__ = name
    return endpoint


# --- responses -------------------------------------------------------------------------------------------

def _resource_headers(doc: Mapping[str, Any] | None, data_service_id: str | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    if doc is not None:
        if doc.get("eTag"):
            headers["ETag"] = doc["eTag"]
        if doc.get("lastModified"):
            headers["Last-Modified"] = rfc1123(parse_iso(doc["lastModified"]))
    if data_service_id:
        headers["DataServiceId"] = data_service_id
    return headers


def json_response(body: Any, status: int = 200, *, doc: Mapping[str, Any] | None = None,
                  data_service_id: str | None = None, head: bool = False) -> Response:
    headers = _resource_headers(doc, data_service_id)
    if head:
        return Response(status_code=status, headers=headers, media_type=JSON_TYPE)
    content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Response(content=content, status_code=status, headers=headers, media_type=JSON_TYPE)


def empty_response(status: int, *, doc: Mapping[str, Any] | None = None, data_service_id: str | None = None
                   ) -> Response:
    return Response(status_code=status, headers=_resource_headers(doc, data_service_id))


def entity(ctx: OpContext, metadata: str, doc: Mapping[str, Any], select: tuple[str, ...] | None = None
           ) -> dict[str, Any]:
    body: dict[str, Any] = {"odata.metadata": f"{ctx.base_url}/$metadata#{metadata}"}
    if select is None:
        body.update(doc)
    else:
        body.update({k: doc[k] for k in select if k in doc})
    return body


def page_body(ctx: OpContext, metadata: str, items: list[dict[str, Any]], next_link: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"odata.metadata": f"{ctx.base_url}/$metadata#{metadata}", "value": items}
    if next_link:
        body["odata.nextLink"] = next_link
    return body
