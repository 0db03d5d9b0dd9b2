"""local.settings.json, the process environment, and `%SETTING%` binding expressions.

Mirrors Azure Functions Core Tools: `Values` become environment variables, but a
variable already set in the environment wins (Core Tools prints "Skipping '<key>'
from local settings as it's already defined in current environment variables").
"""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ops.settings_file import SettingsFileError, read_settings_file

from .errors import DevHostError
from .logs import get_logger

LOCAL_SETTINGS = "local.settings.json"
SAMPLE_SETTINGS = "local.settings.sample.json"

log = get_logger("settings")

# Binding expressions: %NAME% is replaced by the app setting NAME
# (https://learn.microsoft.com/azure/azure-functions/functions-bindings-expressions-patterns).
_APP_SETTING_EXPR = re.compile(r"%([^%]+)%")


@dataclass(frozen=True)
class LocalSettings:
    path: Path
    values: dict[str, str]
    created_from_sample: bool = False


def load_local_settings(app_dir: Path, settings_path: Path | None = None) -> LocalSettings:
    """Read local.settings.json, creating it from local.settings.sample.json when missing."""
    path = settings_path if settings_path is not None else app_dir / LOCAL_SETTINGS
    created = False
    if not path.exists():
        sample = path.parent / SAMPLE_SETTINGS
        if not sample.exists():
            sample = app_dir / SAMPLE_SETTINGS
        if not sample.exists():
            raise DevHostError(f"{path} does not exist and there is no {SAMPLE_SETTINGS} to create it from")
        shutil.copyfile(sample, path)
        created = True
        log.warning("created %s from %s; edit it to change settings", path, sample.name,
                    extra={"event": "settings.created", "path": str(path)})
    try:
        values = read_settings_file(path)  # the one reader of the format (the operator tools use it too)
    except SettingsFileError as exc:
        raise DevHostError(str(exc)) from exc
    return LocalSettings(path=path, values=values, created_from_sample=created)


@dataclass
class EnvironmentOverlay:
    """Puts settings into os.environ and can undo exactly what it changed."""

    applied: dict[str, str | None] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def apply(self, values: Mapping[str, str]) -> None:
        for key, value in values.items():
            if os.environ.get(key):
                if os.environ[key] != value:
                    self.skipped.append(key)
                    log.info("skipping setting %s from local settings: already set in the environment", key,
                             extra={"event": "settings.skipped", "setting": key})
                continue
            self.applied[key] = os.environ.get(key)
            os.environ[key] = value

    def restore(self) -> None:
        for key, previous in self.applied.items():
            if previous is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = previous
        self.applied.clear()


def resolve_app_setting_expressions(text: str, env: Mapping[str, str], where: str) -> str:
    """Replace every %NAME% in a binding property with the app setting's value."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        value = env.get(name)
        if value is None or value == "":
            raise DevHostError(f"{where} refers to app setting %{name}%, which is not set "
                               f"(add it to local.settings.json 'Values')")
        return value

    return _APP_SETTING_EXPR.sub(substitute, text)
