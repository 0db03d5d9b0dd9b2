"""A counting azure-core transport: every HTTP request the app's SDK clients send, by service and operation.

Given to the app's clients through `shared.runtime.build_service(settings, {"transport": ...})` (the
seam the app offers for exactly this), so counts are of the real SDK traffic, retries included.
"""
from __future__ import annotations

import threading
from collections import Counter
from urllib.parse import urlsplit

from azure.core.pipeline.transport import RequestsTransport


class CountingTransport(RequestsTransport):
    def __init__(self, services: dict[str, str], **kwargs) -> None:
        """`services` maps "host:port" to a service name ("batch", "blob", "table")."""
        super().__init__(**kwargs)
        self._services = dict(services)
        self._lock = threading.Lock()
        self.counts: Counter[tuple[str, str]] = Counter()

    def send(self, request, **kwargs):
        parts = urlsplit(request.url)
        service = self._services.get(parts.netloc, parts.netloc)
        operation = f"{request.method} {_shape(service, parts.path)}"
        with self._lock:
            self.counts[(service, operation)] += 1
        return super().send(request, **kwargs)

    def snapshot(self) -> Counter[tuple[str, str]]:
        with self._lock:
            return Counter(self.counts)

    @staticmethod
    def by_service(counts: Counter[tuple[str, str]]) -> Counter[str]:
        out: Counter[str] = Counter()
        for (service, _), n in counts.items():
            out[service] += n
        return out


def _shape(service: str, path: str) -> str:
    """A path with its names blanked out, so requests group by operation (e.g. "/jobs/*/tasks")."""
    parts = [p for p in path.split("/") if p]
    if service == "batch":
        return "/" + "/".join(p if i % 2 == 0 else "*" for i, p in enumerate(parts))
    if service in ("blob", "table", "queue"):
        # /account/container/blob... or /account/Table(...)
        if len(parts) <= 1:
            return "/"
        tail = parts[1]
        if service == "table":
            if tail in ("$batch", "Tables") or tail.startswith("Tables("):
                return "/" + tail.split("(")[0]
            keyed = "(" in tail and not tail.endswith("()")
            return "/<table>" + ("(keys)" if keyed else "")
        return "/container" + ("/blob" if len(parts) > 2 else "")
    return path
