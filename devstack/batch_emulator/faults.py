"""Throttling injection (test hook): answer a share of Batch requests with 429 TooManyRequests or 503 ServerBusy,
optionally with Retry-After, so clients' retry handling can be exercised against the real SDK pipeline.

Two modes: `rate` (probability per request, seeded for reproducibility) or `count` (fail exactly the next N
matching requests - deterministic for tests). `operations` restricts injection to named operations.
"""
from __future__ import annotations

import dataclasses
import random
import threading
from typing import Any, Mapping

from . import errors
from .config import ConfigError, FaultSettings


class FaultInjector:
    def __init__(self, settings: FaultSettings, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._settings = settings
        self._remaining = settings.count
        self.injected = 0

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    def configure(self, settings: FaultSettings, seed: int | None = None) -> None:
        with self._lock:
            self._settings = settings
            self._remaining = settings.count
            if seed is not None:
                self._random = random.Random(seed)

    def configure_from_json(self, body: Mapping[str, Any]) -> FaultSettings:
        """Admin API body: {"rate", "status", "retryAfter" (null = no header), "operations", "count", "seed"}."""
        current = FaultSettings()
        changes: dict[str, Any] = {}
        mapping = {"rate": "rate", "status": "status", "retryAfter": "retry_after", "operations": "operations",
                   "count": "count"}
        for key, attr in mapping.items():
            if key in body:
                value = body[key]
                changes[attr] = tuple(value) if attr == "operations" and value is not None else value
        settings = dataclasses.replace(current, **changes)
        _validate(settings)
        self.configure(settings, seed=body.get("seed"))
        return settings

    def check(self, operation: str) -> errors.BatchError | None:
        s = self._settings
        if s.rate <= 0 and not self._remaining:
            return None
        if s.operations and operation not in s.operations:
            return None
        with self._lock:
            if self._remaining is not None:
                if self._remaining <= 0:
                    return None
                self._remaining -= 1
            elif self._random.random() >= s.rate:
                return None
            self.injected += 1
        if s.status == 429:
            return errors.too_many_requests(s.retry_after)
        if s.status == 500:
            exc = errors.internal_error()
            if s.retry_after is not None:
                exc.headers["Retry-After"] = str(s.retry_after)
            return exc
        return errors.server_busy(s.retry_after)

    def describe(self) -> dict[str, Any]:
        s = self._settings
        return {"rate": s.rate, "status": s.status, "retryAfter": s.retry_after, "operations": list(s.operations),
                "count": s.count, "remaining": self._remaining, "injected": self.injected}


def _validate(s: FaultSettings) -> None:
    if not isinstance(s.rate, (int, float)) or not 0 <= s.rate <= 1:
        raise ConfigError("fault_rate", f"{s.rate!r} is not a probability in [0, 1]")
    if s.status not in (429, 500, 503):
        raise ConfigError("fault_status", "must be 429, 500 or 503")
    if s.retry_after is not None and (not isinstance(s.retry_after, int) or s.retry_after < 0):
        raise ConfigError("fault_retry_after", "must be a non-negative integer or null")
    if s.count is not None and (not isinstance(s.count, int) or s.count < 0):
        raise ConfigError("fault_count", "must be a non-negative integer or null")
