"""Bearer tokens: accepted only when the emulator is started with allow_bearer (identity-flow tests).

The emulator has no Entra ID to validate against, so an allowed token is only checked for shape (three
base64url segments, as every Entra access token is a JWS). Off by default so a misconfigured client that would
fail against the real service also fails here.
"""
from __future__ import annotations

import re

from .. import errors

_JWS = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")


def verify_bearer(token: str, *, allowed: bool) -> None:
    if not allowed:
        raise errors.authentication_failed(
            "Bearer tokens are not accepted: start the emulator with --allow-bearer (BATCH_EMULATOR_ALLOW_BEARER).")
    if not _JWS.match(token):
        raise errors.authentication_failed("The bearer token is not a well-formed JWT.")
