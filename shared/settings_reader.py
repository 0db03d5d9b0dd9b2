"""The one reader of app settings: typed, validated access where every error names the setting.

Blank values count as unset, so an app setting left empty in the portal means "use the default".
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from enum import Enum
from typing import TypeVar
from urllib.parse import urlsplit

E = TypeVar("E", bound=Enum)

# Batch ids (pool, job, task): letters, digits, hyphen, underscore, at most 64 characters
# (azure-batch 15.1.0 BatchPoolCreateOptions.id / BatchTaskCreateOptions.id docstrings).
BATCH_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Container names: 3-63 chars, lowercase letters, digits, single hyphens, not at either end.
_CONTAINER_RE = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$")
# Queue names: 3-63 chars, lowercase letters, digits, single hyphens, not at either end (as containers).
_QUEUE_RE = _CONTAINER_RE
# Table names: 3-63 alphanumeric characters, not starting with a digit.
_TABLE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")


class SettingsError(ValueError):
    """A setting is missing or invalid; `setting` is its app-setting name."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"app setting {setting}: {problem}")
        self.setting = setting


class Reader:
    """Typed access to raw settings; blank values count as unset."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def optional(self, name: str) -> str | None:
        value = self._env.get(name)
        if value is None or not value.strip():
            return None
        return value.strip()

    def required(self, name: str) -> str:
        value = self.optional(name)
        if value is None:
            raise SettingsError(name, "is required but not set")
        return value

    def text(self, name: str, default: str) -> str:
        return self.optional(name) or default

    def url(self, name: str) -> str:
        value = self.required(name).rstrip("/")
        check_url(name, value)
        return value

    def optional_url(self, name: str) -> str | None:
        value = self.optional(name)
        if value is not None:
            check_url(name, value)
        return value

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(name, f"must be an integer, got {raw!r}") from None
        if not low <= value <= high:
            raise SettingsError(name, f"must be between {low} and {high}, got {value}")
        return value

    def seconds(self, name: str, default: int, *, low: int, high: int) -> timedelta:
        raw = self.optional(name)
        if raw is None:
            return timedelta(seconds=default)
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(name, f"must be an integer number of seconds, got {raw!r}") from None
        if not low <= value <= high:
            raise SettingsError(name, f"must be between {low} and {high} seconds, got {value}")
        return timedelta(seconds=value)

    def choice(self, name: str, enum: type[E], default: E) -> E:
        raw = self.optional(name)
        if raw is None:
            return default
        for member in enum:
            if member.value.lower() == raw.lower():
                return member
        allowed = ", ".join(m.value for m in enum)
        raise SettingsError(name, f"must be one of {allowed}, got {raw!r}")

    def container(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if not _CONTAINER_RE.match(value):
            raise SettingsError(name, f"{value!r} is not a valid blob container name")
        return value

    def queue(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if not _QUEUE_RE.match(value):
            raise SettingsError(name, f"{value!r} is not a valid storage queue name")
        return value

    def table(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if not _TABLE_RE.match(value):
            raise SettingsError(name, f"{value!r} is not a valid table name (3-63 letters/digits)")
        return value

    def batch_id(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if not BATCH_ID_RE.match(value):
            raise SettingsError(name, f"{value!r} is not a valid Batch id (letters, digits, -, _; max 64)")
        return value


def check_url(name: str, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(name, "must be an absolute http(s) URL")
