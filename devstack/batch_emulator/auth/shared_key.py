"""Batch Shared Key verification.

The string to sign is exactly what azure-batch 15.1.0 computes (azure/batch/_patch.py BatchSharedKeyAuthPolicy):
    METHOD\n + the 11 standard header slots (content-encoding ... range; empty if absent; content-length "0" for
    non-GET/HEAD without one)\n + sorted `ocp-*` headers as "name:value\n" + "/{account}{raw path}" +
    "\n{name}:{first decoded value}" for each query parameter, names sorted case-sensitively, empty values skipped.
The documented canonical form (learn.microsoft.com/rest/api/batchservice/authenticate-requests-to-the-azure-batch-
service) differs: query names lower-cased, repeated values sorted and comma-joined, the Date line empty whenever
ocp-date is sent, headers "beginning with ocp-" with folded white space trimmed, and nothing says a bodyless request
signs Content-Length as "0" (curl -X DELETE sends no Content-Length, so a documented signer has an empty line).
azure-batch 4.x (the ffmpeg tutorial's era) signs the path with %2F and %5C turned into "/" while sending them
encoded (a task file path such as wd%2Fout.mp3).
A request is accepted when it matches any of these forms, so clients nobody here wrote work too; each form still
covers method, path, query, date and body length, so tampering with any of them is detected.

The ocp-date/Date header must be within `clock_skew` of the emulator clock (±15 min by default: the same page says
"The Batch service must receive a request within 15 minutes of when it is created").
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Iterator
from urllib.parse import parse_qs, parse_qsl

from .. import errors
from ..timeutil import parse_rfc1123

if TYPE_CHECKING:
    from . import RequestFacts

_FOLDED_SPACE = re.compile(r"\s+")
SIGNED_HEADER_SLOTS = ("content-encoding", "content-language", "content-length", "content-md5", "content-type",
                       "date", "if-modified-since", "if-match", "if-none-match", "if-unmodified-since", "range")


def string_to_sign(account: str, method: str, raw_path: str, query_string: str, headers: dict[str, str],
                   lowercase_query_names: bool = False) -> str:
    """The azure-batch SDK form, or (lowercase_query_names) the SDK form with documented query canonicalisation."""
    h = {k: v for k, v in headers.items() if v}
    if method not in ("GET", "HEAD") and "content-length" not in h:
        h["content-length"] = "0"
    parts = [method, "\n", "\n".join(h.get(name, "") for name in SIGNED_HEADER_SLOTS), "\n"]
    for name in sorted(k for k in h if "ocp-" in k):
        parts.append(f"{name}:{h[name]}\n")
    parts.append(f"/{account}{raw_path}")
    parts.append(_documented_query(query_string) if lowercase_query_names else _sdk_query(query_string))
    return "".join(parts)


def documented_string_to_sign(account: str, method: str, raw_path: str, query_string: str,
                              headers: dict[str, str]) -> str:
    """The form of the Batch REST documentation ("Construct the signature string" and the two canonical parts)."""
    h = {k: v for k, v in headers.items() if v}
    if "ocp-date" in h:
        h.pop("date", None)  # "If you set ocp-date, construct the signature with an empty value for the Date header"
    parts = [method, "\n", "\n".join(h.get(name, "") for name in SIGNED_HEADER_SLOTS), "\n"]
    for name in sorted(k for k in h if k.startswith("ocp-")):
        parts.append(f"{name}:{_FOLDED_SPACE.sub(' ', h[name]).strip()}\n")
    parts.append(f"/{account}{raw_path}")
    parts.append(_documented_query(query_string))
    return "".join(parts)


def _sdk_query(query_string: str) -> str:
    # azure-batch: parse_qs, names sorted case-sensitively, first value only, empty values skipped.
    query = parse_qs(query_string)
    return "".join(f"\n{name}:{query[name][0]}" for name in sorted(query) if query[name][0])


def _documented_query(query_string: str) -> str:
    # Docs: names lower-cased and URL-decoded, sorted; several values sorted and comma-separated.
    grouped: dict[str, list[str]] = {}
    for name, value in parse_qsl(query_string):
        grouped.setdefault(name.lower(), []).append(value)
    return "".join(f"\n{name}:{','.join(sorted(grouped[name]))}" for name in sorted(grouped))


def _azure_batch_4_path(raw_path: str) -> str:
    """azure-batch 4.x (batch_auth.SharedKeyAuth) signs the path with %2F and %5C replaced by '/'."""
    return raw_path.replace("%5C", "/").replace("%2F", "/")


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
        shown = ""
        for text in self._candidates(request):  # the SDK form first: it is what nearly every request uses
            shown = shown or text
            if hmac.compare_digest(sign(self._key, text), signature):
                return
        shown = shown.replace("\n", "\\n")
        raise errors.authentication_failed(
            f"The MAC signature found in the HTTP request '{signature}' is not the same as any computed signature. "
            f"Server used following string to sign: '{shown}'.")

    def _candidates(self, request: "RequestFacts") -> Iterator[str]:
        m, path, query, headers = request.method, request.raw_path, request.query_string, request.headers
        yield string_to_sign(self._account, m, path, query, headers)
        yield string_to_sign(self._account, m, path, query, headers, lowercase_query_names=True)
        yield documented_string_to_sign(self._account, m, path, query, headers)
        if m not in ("GET", "HEAD") and not headers.get("content-length"):
            # A bodyless request whose client signed Content-Length as "0" without sending the header.
            yield documented_string_to_sign(self._account, m, path, query, {**headers, "content-length": "0"})
        if _azure_batch_4_path(path) != path:
            yield string_to_sign(self._account, m, _azure_batch_4_path(path), query, headers)

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
