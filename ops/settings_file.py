"""The one reader of local.settings.json-shaped files (`IsEncrypted`, `Values`), for the operator tools
and the dev host alike.

Standard library only: the dev host imports it, and must not pull the app's package (`shared`)
into its own process before it loads the app it hosts.
"""
from __future__ import annotations

import json
from pathlib import Path


class SettingsFileError(ValueError):
    """A local.settings.json-shaped file that cannot be read as plain settings."""


def read_settings_file(path: Path) -> dict[str, str]:
    """The `Values` of a local.settings.json-shaped file, as strings, the way the Functions host reads them."""
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise SettingsFileError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise SettingsFileError(f"{path} must hold a JSON object with a 'Values' object")
    if document.get("IsEncrypted"):
        raise SettingsFileError(f"{path} is encrypted (IsEncrypted=true); only plain settings can be read")
    raw_values = document.get("Values", {})
    if not isinstance(raw_values, dict):
        raise SettingsFileError(f"'Values' in {path} must be an object of setting names to strings")
    values: dict[str, str] = {}
    for key, value in raw_values.items():
        if isinstance(value, (dict, list)):
            raise SettingsFileError(f"setting {key!r} in {path} must be a string, not {type(value).__name__}")
        values[key] = _setting_text(value)
    return values


def _setting_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):  # JSON true/false -> "true"/"false", as .NET configuration reads them
        return str(value).lower()
    return str(value)
