"""Where the operator tools get settings: a local.settings.json-shaped file, or the environment.

The file is read by `ops.settings_file` (the one reader of that format; the dev host uses it too);
the values are then validated by the app's own `shared.settings.Settings`, so an error names the
setting.
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.settings import Settings, SettingsError

from .settings_file import SettingsFileError, read_settings_file

ROOT = Path(__file__).resolve().parent.parent
LOCAL_SETTINGS = "local.settings.json"
SAMPLE_SETTINGS = "local.settings.sample.json"


class StatusError(Exception):
    """A problem the operator can act on; printed without a traceback."""


@dataclass(frozen=True)
class LoadedSettings:
    settings: Settings
    source: str          # where they came from, for messages ("local.settings.json", "environment")


def settings_file(explicit: str | None, cwd: Path) -> Path:
    """--settings PATH, else ./local.settings.json, else the sample (cwd first, then the repo root)."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise StatusError(f"settings file {path} does not exist")
        return path
    for folder in dict.fromkeys((cwd, ROOT)):
        for name in (LOCAL_SETTINGS, SAMPLE_SETTINGS):
            if (folder / name).is_file():
                return folder / name
    raise StatusError(f"no {LOCAL_SETTINGS} or {SAMPLE_SETTINGS} here; pass --settings PATH or --env")


def load_settings(*, use_env: bool, settings_path: str | None, env: Mapping[str, str],
                  cwd: Path) -> LoadedSettings:
    """Validated settings from the environment or a settings file; StatusError names what is wrong."""
    if use_env:
        values, source = dict(env), "the environment"
    else:
        path = settings_file(settings_path, cwd)
        try:
            values, source = read_settings_file(path), str(path)
        except SettingsFileError as exc:
            raise StatusError(str(exc)) from exc
    try:
        return LoadedSettings(Settings.from_env(values), source)
    except SettingsError as exc:
        raise StatusError(f"settings from {source}: {exc}{_typo_hint(exc.setting, values)}") from exc


def _typo_hint(setting: str, values: Mapping[str, str]) -> str:
    """A misspelt setting name is the usual reason a required one is 'not set'."""
    if values.get(setting, "").strip():
        return ""
    close = difflib.get_close_matches(setting, [k for k, v in values.items() if k != setting and v], n=1,
                                      cutoff=0.85)
    return f" (found {close[0]}: a misspelling of {setting}?)" if close else ""
