"""A raw REST client for Batch that signs requests the way Microsoft's documentation describes, not the way any
SDK does: "Authenticate requests to the Azure Batch service" (learn.microsoft.com/rest/api/batchservice/
authenticate-requests-to-the-azure-batch-service).

Documented rules this follows (and where SDKs differ):
- string to sign = VERB, the 11 standard header values in a fixed order (empty when absent; the Date slot is
  empty whenever `ocp-date` is sent), the canonicalized `ocp-*` headers, then the canonicalized resource;
- canonicalized headers: names starting with `ocp-`, lower-cased, sorted, values with folded white space
  collapsed and trimmed, each line ending in a new line;
- canonicalized resource: `/{account}{encoded path}`, then every query parameter with its name lower-cased and
  URL-decoded, sorted by name, multiple values sorted and comma-joined, one `\\nname:value` per parameter.

It is deliberately independent of the emulator's own verifier and of the azure-batch policies, so a test that
signs with it checks the emulator against the documentation rather than against itself.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any, Mapping
from urllib.parse import parse_qsl, urlsplit

import httpx

STANDARD_HEADERS = ("content-encoding", "content-language", "content-length", "content-md5", "content-type",
                    "date", "if-modified-since", "if-match", "if-none-match", "if-unmodified-since", "range")
# The documentation's required Content-Type for request bodies.
JSON_CONTENT_TYPE = "application/json;odata=minimalmetadata"
_FOLDED_SPACE = re.compile(r"\s+")


def rfc1123_now() -> str:
    return format_datetime(datetime.now(timezone.utc), usegmt=True)


def canonicalized_headers(headers: Mapping[str, str]) -> str:
    lines = []
    for name in sorted({k.lower() for k in headers if k.lower().startswith("ocp-")}):
        value = next(v for k, v in headers.items() if k.lower() == name)
        lines.append(f"{name}:{_FOLDED_SPACE.sub(' ', value).strip()}\n")
    return "".join(lines)


def canonicalized_resource(account: str, url: str) -> str:
    parts = urlsplit(url)
    out = f"/{account}{parts.path}"
    grouped: dict[str, list[str]] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        grouped.setdefault(name.lower(), []).append(value)
    for name in sorted(grouped):
        out += f"\n{name}:{','.join(sorted(grouped[name]))}"
    return out


def string_to_sign(method: str, url: str, headers: Mapping[str, str], account: str) -> str:
    lowered = {k.lower(): v for k, v in headers.items()}
    if "ocp-date" in lowered:
        lowered["date"] = ""  # documented: with ocp-date, sign an empty Date line
    slots = "\n".join(lowered.get(name, "") for name in STANDARD_HEADERS)
    return f"{method.upper()}\n{slots}\n{canonicalized_headers(headers)}{canonicalized_resource(account, url)}"


def signature(key: str, text: str) -> str:
    digest = hmac.new(base64.b64decode(key), text.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass
class DocsFormClient:
    """Minimal Batch REST client: `request()` signs per the docs and sends with httpx."""

    base_url: str
    account: str
    key: str
    api_version: str = "2024-07-01.20.0"
    timeout: float = 15.0

    def url(self, path: str, query: str = "") -> str:
        sep = "&" if query else ""
        return f"{self.base_url.rstrip('/')}{path}?{query}{sep}api-version={self.api_version}"

    def signed_headers(self, method: str, url: str, body: bytes | None, extra: Mapping[str, str] | None = None
                       ) -> dict[str, str]:
        headers = {"ocp-date": rfc1123_now(), **(extra or {})}
        if body is not None:
            headers.setdefault("Content-Type", JSON_CONTENT_TYPE)
            headers["Content-Length"] = str(len(body))
        headers["Authorization"] = f"SharedKey {self.account}:" + signature(
            self.key, string_to_sign(method, url, headers, self.account))
        return headers

    def request(self, method: str, path: str, *, query: str = "", json_body: Any = None, raw_body: bytes | None = None,
                headers: Mapping[str, str] | None = None, url: str | None = None) -> httpx.Response:
        body = raw_body if raw_body is not None else (
            json.dumps(json_body).encode() if json_body is not None else None)
        if body is None and method.upper() in ("POST", "PUT", "PATCH"):
            body = b""  # documented: POST carries Content-Type and Content-Length (httpx sends "0" anyway)
        target = url or self.url(path, query)
        signed = self.signed_headers(method, target, body, headers)
        return httpx.request(method, target, headers=signed, content=body, timeout=self.timeout)
