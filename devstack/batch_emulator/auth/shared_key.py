"""Batch Shared Key verification.

The string to sign is exactly what azure-batch 15.1.0 computes (azure/batch/_patch.py BatchSharedKeyAuthPolicy):
    METHOD\n + the 11 standard header slots (content-encoding ... range; empty if absent; content-length "0" for
    non-GET/HEAD without one)\n + sorted `ocp-*` headers as "name:value\n" + "/{account}{raw path}" +
    "\n{name}:{first decoded value}" for each query parameter, names sorted case-sensitively, empty values skipped.
The documented canonical form (learn.microsoft.com/rest/api/batchservice/authenticate-requests-to-the-azure-batch-
service) lower-cases query names; a request is accepted when it matches either form, so other clients work too.

The ocp-date/Date header must be within `clock_skew` of the emulator clock (an emulator choice, ±15 min by default:
the Batch docs do not state a window; this is Azure Storage's rule).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from .. import errors
from ..timeutil import parse_rfc1123

if TYPE_CHECKING:
    from . import RequestFacts

SIGNED_HEADER_SLOTS = ("content-encoding", "content-language", "content-length", "content-md5", "content-type",
                       "date", "if-modified-since", "if-match", "if-none-match", "if-unmodified-since", "range")


def string_to_sign(account: str, method: str, raw_path: str, query_string: str, headers: dict[str, str],
                   lowercase_query_names: bool = False) -> str:
    h = {k: v for k, v in headers.items() if v}
    if method not in ("GET", "HEAD") and "content-length" not in h:
        h["content-length"] = "0"
    parts = [method, "\n", "\n".join(h.get(name, "") for name in SIGNED_HEADER_SLOTS), "\n"]
    for name in sorted(k for k in h if "ocp-" in k):
        parts.append(f"{name}:{h[name]}\n")
    parts.append(f"/{account}{raw_path}")
    query = parse_qs(query_string)
    if lowercase_query_names:
        merged: dict[str, str] = {}
        for name in sorted(query, key=str.lower):
            merged.setdefault(name.lower(), ",".join(query[name]))
        query_items = sorted(merged.items())
    else:
        query_items = [(name, query[name][0]) for name in sorted(query)]
    for name, value in query_items:
        if value:
            parts.append(f"\n{name}:{value}")
    return "".join(parts)


def sign(key: bytes, text: str) -> str:
    return base64.b64encode(hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()).decode("ascii")


class SharedKeyVerifier:
    def __init__(self, account_name: str, account_key: str, clock_skew: timedelta) -> None:
        self._account = account_name
        self._key = base64.b64decode(account_key)
        self._skew = clock_skew

    def verify(self, request: "RequestFacts", credentials: str, now: datetime) -> None:
        account, sep, signature = credentials.partition(":")
        if not sep or not signature:
            raise errors.authentication_failed("The Authorization header is not 'SharedKey <account>:<signature>'.")
        if account != self._account:
            raise errors.authentication_failed(
                f"The account name '{account}' in the Authorization header does not match this emulator's account.")
        self._check_date(request.headers, now)
        candidates = []
        for lower in (False, True):
            text = string_to_sign(self._account, request.method, request.raw_path, request.query_string,
                                  request.headers, lowercase_query_names=lower)
            if text not in candidates:
                candidates.append(text)
        for text in candidates:
            if hmac.compare_digest(sign(self._key, text), signature):
                return
        shown = candidates[0].replace("\n", "\\n")
        raise errors.authentication_failed(
            f"The MAC signature found in the HTTP request '{signature}' is not the same as any computed signature. "
            f"Server used following string to sign: '{shown}'.")

    def _check_date(self, headers: dict[str, str], now: datetime) -> None:
        raw = headers.get("ocp-date") or headers.get("date")
        if not raw:
            raise errors.authentication_failed("The request has neither an ocp-date nor a Date header.")
        try:
            sent = parse_rfc1123(raw)
        except (TypeError, ValueError):
            raise errors.authentication_failed(f"The date header '{raw}' is not an RFC 1123 date.") from None
        if abs(now - sent) > self._skew:
            raise errors.authentication_failed(
                f"Request date header '{raw}' is outside the accepted window of "
                f"±{int(self._skew.total_seconds())} seconds around the emulator clock.")
