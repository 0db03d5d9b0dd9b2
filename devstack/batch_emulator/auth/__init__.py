"""Request authentication, one module per scheme (Shared Key, bearer), behind one `authenticate` entry point."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .. import errors
from .bearer import verify_bearer
from .shared_key import SharedKeyVerifier


@dataclass(frozen=True)
class RequestFacts:
    """What authentication needs from an HTTP request, independent of the web framework."""

    method: str
    raw_path: str
    query_string: str
    headers: dict[str, str]  # lower-case names -> value (last value wins)


class Authenticator:
    def __init__(self, account_name: str, account_key: str, allow_bearer: bool, clock_skew: timedelta) -> None:
        self._shared_key = SharedKeyVerifier(account_name, account_key, clock_skew)
        self._allow_bearer = allow_bearer

    def authenticate(self, request: RequestFacts, now: datetime) -> str:
        """Return the scheme that authenticated the request, or raise BatchError (403 AuthenticationFailed)."""
        authorization = request.headers.get("authorization")
        if not authorization:
            raise errors.authentication_failed("The Authorization header is missing.")
        scheme, _, credentials = authorization.partition(" ")
        if scheme == "SharedKey":
            self._shared_key.verify(request, credentials.strip(), now)
            return "SharedKey"
        if scheme.lower() == "bearer":
            verify_bearer(credentials.strip(), allowed=self._allow_bearer)
            return "Bearer"
        raise errors.authentication_failed(f"The authentication scheme '{scheme}' is not supported.")
