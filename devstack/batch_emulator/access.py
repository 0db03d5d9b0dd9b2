"""Who may talk to the emulator: local programs only, never a web page (issue 14).

The emulator signs nothing secret: its account key is the published development key (like Azurite's), so a
valid Shared Key signature proves nothing about the caller. What keeps a browser out is checked here, once, by
the FrontDoor in front of every route (Batch and `/_emulator`):

- `Host` must name the loopback interface: `127.0.0.1`, `localhost` or `[::1]`, with or without a port, any
  case. DNS rebinding (a page on rebind.attacker.example whose name now resolves to 127.0.0.1) still sends its
  own name, so it is refused (400 InvalidHeaderValue) before authentication or any handler runs.
- A request a browser marks as coming from a web page is refused (403 RequestFromWebPageNotAllowed): any
  `Origin` header (browsers send it on every cross-origin request and every non-GET fetch), or
  `Sec-Fetch-Site` other than `none` (typed into the address bar) / `same-origin`.
- `/_emulator/*` additionally needs `x-emulator-admin: 1`: a custom header a page cannot send cross-origin
  without a CORS preflight, which the emulator never grants (the preflight carries `Origin`).

Clients of the admin routes send `ADMIN_HEADERS`.
"""
from __future__ import annotations

import re

from . import errors

ADMIN_HEADER = "x-emulator-admin"
ADMIN_HEADERS = {ADMIN_HEADER: "1"}
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")

_LOOPBACK_HOST = re.compile(r"(?:127\.0\.0\.1|localhost|\[::1\])(?::[0-9]{1,5})?", re.IGNORECASE)
_SAFE_FETCH_SITES = ("none", "same-origin")


def is_loopback_host(value: str) -> bool:
    """`value` (a Host header) names the loopback interface: 127.0.0.1, localhost or [::1], optional port."""
    return _LOOPBACK_HOST.fullmatch(value.strip()) is not None


def _values(headers: list[tuple[bytes, bytes]], name: bytes) -> list[str]:
    return [v.decode("latin-1") for k, v in headers if k.lower() == name]


def check_request(headers: list[tuple[bytes, bytes]], *, admin: bool) -> None:
    """Raise the BatchError that refuses this request, or return if it may be served.

    `headers` as in an ASGI scope (lower-case names); `admin` for the `/_emulator` routes.
    """
    hosts = _values(headers, b"host")
    if len(hosts) != 1 or not is_loopback_host(hosts[0]):
        raise errors.host_not_allowed(hosts[0] if len(hosts) == 1 else ", ".join(hosts), LOOPBACK_NAMES)
    origins = _values(headers, b"origin")
    if origins:
        raise errors.request_from_web_page("Origin", origins[0])
    for site in _values(headers, b"sec-fetch-site"):
        if site.strip().lower() not in _SAFE_FETCH_SITES:
            raise errors.request_from_web_page("Sec-Fetch-Site", site)
    if admin and [v.strip() for v in _values(headers, ADMIN_HEADER.encode())] != ["1"]:
        raise errors.admin_header_required(ADMIN_HEADER)
