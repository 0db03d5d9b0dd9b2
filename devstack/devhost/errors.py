"""Errors the dev host reports to the user instead of a traceback."""
from __future__ import annotations


class DevHostError(Exception):
    """A configuration or app problem the user must fix; the message says how."""


class BlobContentNotLoadedError(RuntimeError):
    """Raised by the metadata-only blob stream when a function tries to read the blob's bytes."""
