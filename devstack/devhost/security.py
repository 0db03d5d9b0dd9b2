"""Who may talk to the dev host: local callers only, and the webhook only with the blobs_extension key.

Two guards (issue 14):
- `LocalOnlyMiddleware`, on every route: the `Host` header must name the loopback interface
  (`127.0.0.1`, `localhost`, `[::1]`, any port, any case), which defeats DNS rebinding (a page
  on rebind.attacker.example whose name now resolves to 127.0.0.1 still sends its own name);
  and a request that a browser marks as coming from a web page (`Origin` header, or
  `Sec-Fetch-Site` other than `none`/`same-origin`) is refused, so no local web page can
  drive the host, with or without CORS.
- The blob extension's system key: Azure's webhook URL carries `code=<blobs_extension key>`
  (system keys authorize `/runtime/webhooks/<extension>`). Azure keeps the key in the host's
  secret store; Core Tools checks no key unless `func start --enableAuth`. The dev host always
  checks it: `DEVHOST_BLOBS_EXTENSION_KEY` (environment or local.settings.json) when set, else
  a random key generated once and kept in `<state dir>/blobs_extension.key` (mode 0600).
"""
from __future__ import annotations

import hmac
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import DevHostError
from .logs import get_logger

log = get_logger("security")

KEY_SETTING = "DEVHOST_BLOBS_EXTENSION_KEY"
KEY_FILE = "blobs_extension.key"
KEY_QUERY_PARAMETER = "code"
KEY_HEADER = "x-functions-key"  # the host accepts a key in this header as well as in ?code=

_LOOPBACK_HOST = re.compile(r"(?:127\.0\.0\.1|localhost|\[::1\])(?::[0-9]{1,5})?", re.IGNORECASE)
_SAFE_FETCH_SITES = ("none", "same-origin")  # typed into the address bar / the host's own pages


@dataclass(frozen=True)
class WebhookKey:
    value: str
    source: str  # where it came from, for messages: the setting's name or the key file's path

    def matches(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode(), self.value.encode())


def load_or_create_key_file(state_dir: Path) -> str:
    """The key kept in `<state_dir>/blobs_extension.key`, created (0600, random) on first use."""
    path = Path(state_dir) / KEY_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            _create_key_file(path)
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)  # a key file someone copied or made by hand: keep it private
        key = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise DevHostError(f"cannot read or create the webhook key file {path}: {exc}") from exc
    if not key:
        raise DevHostError(f"the webhook key file {path} is empty; delete it to get a new key")
    return key


def _create_key_file(path: Path) -> None:
    # Written in full under a private temporary name, then linked into place: a host or `./dev start`
    # racing this one sees either no file or the whole key, and only one key ever wins.
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_urlsafe(32) + "\n")  # URL-safe: it goes into ?code= as is
        try:
            os.link(temporary, path)
        except FileExistsError:
            return
        log.info("generated the blobs_extension key in %s", path,
                 extra={"event": "key.generated", "path": str(path)})
    finally:
        temporary.unlink(missing_ok=True)


def resolve_webhook_key(env: Mapping[str, str], state_dir: Path) -> WebhookKey:
    """`DEVHOST_BLOBS_EXTENSION_KEY` when set (non-empty), else the state dir's key file."""
    explicit = (env.get(KEY_SETTING) or "").strip()
    if explicit:
        return WebhookKey(explicit, KEY_SETTING)
    return WebhookKey(load_or_create_key_file(state_dir), str(Path(state_dir) / KEY_FILE))


def is_loopback_host(value: str) -> bool:
    return _LOOPBACK_HOST.fullmatch(value) is not None


def refusal_reason(headers: list[tuple[bytes, bytes]]) -> str | None:
    """Why a request must be refused (None: serve it). `headers` as in an ASGI scope."""
    hosts = [v.decode("latin-1") for k, v in headers if k == b"host"]
    if len(hosts) != 1 or not is_loopback_host(hosts[0].strip()):
        return "the dev host answers only requests addressed to 127.0.0.1, localhost or [::1]"
    if any(k == b"origin" for k, _ in headers):
        return "the dev host does not serve requests made by web pages (Origin header)"
    sites = [v.decode("latin-1").strip().lower() for k, v in headers if k == b"sec-fetch-site"]
    if any(site not in _SAFE_FETCH_SITES for site in sites):
        return "the dev host does not serve requests made by web pages (Sec-Fetch-Site)"
    return None


class LocalOnlyMiddleware:
    """Refuse (403) any HTTP request not addressed to loopback by name, or sent by a web page."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            reason = refusal_reason(scope.get("headers") or [])
            if reason is not None:
                log.warning("refused %s %s: %s", scope.get("method", "WS"), scope.get("path"), reason,
                            extra={"event": "http.refused", "path": scope.get("path"), "reason": reason})
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                body = json.dumps({"error": reason}).encode()
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
