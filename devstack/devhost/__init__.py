"""A local Azure Functions host for `function_app.app` (never deployed). See README.md."""
from .clock import ManualClock, SystemClock
from .errors import BlobContentNotLoadedError, DevHostError
from .host import DevHost

__all__ = ["DevHost", "DevHostError", "BlobContentNotLoadedError", "ManualClock", "SystemClock"]
