"""Request-body checks that answer with the service's 400 codes (MissingRequiredProperty, InvalidPropertyValue)."""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Mapping

from .. import errors
from ..timeutil import parse_duration

Body = Mapping[str, Any]

# The service's JSON reader converts numeric and boolean strings to the declared property type (.NET JSON
# deserialisation is lenient that way), and the az CLI relies on it: `az batch pool create
# --target-dedicated-nodes 1` sends {"targetDedicatedNodes": "1"}, `az batch task create --max-task-retry-count 2`
# sends {"constraints": {"maxTaskRetryCount": "2"}}. Such values are accepted and stored typed, so the stored
# document (and what the emulator echoes) carries numbers and booleans like the service's responses do.
_INTEGER_TEXT = re.compile(r"^[+-]?[0-9]{1,10}$")


def _store(body: Body, name: str, value: Any) -> Any:
    if isinstance(body, dict):
        body[name] = value
    return value


def body_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise errors.invalid_request_body("The request body must be a JSON object.")
    return body


def string(body: Body, name: str, *, required: bool = False, path: str | None = None) -> str | None:
    value = body.get(name)
    label = path or name
    if value is None or value == "":
        if required:
            raise errors.missing_required_property(label)
        return None
    if not isinstance(value, str):
        raise errors.invalid_property_value(label, value, "The value must be a string.")
    return value


def integer(body: Body, name: str, *, default: int | None = None, minimum: int | None = None,
            maximum: int | None = None, path: str | None = None) -> int | None:
    value = body.get(name)
    label = path or name
    if value is None:
        return default
    if isinstance(value, str) and _INTEGER_TEXT.match(value):
        value = _store(body, name, int(value))
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.invalid_property_value(label, value, "The value must be an integer.")
    if minimum is not None and value < minimum:
        raise errors.invalid_property_value(label, value, f"The value must be at least {minimum}.")
    if maximum is not None and value > maximum:
        raise errors.invalid_property_value(label, value, f"The value must be at most {maximum}.")
    return value


def boolean(body: Body, name: str, *, default: bool | None = None, path: str | None = None) -> bool | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, str) and value.lower() in ("true", "false"):
        value = _store(body, name, value.lower() == "true")
    if not isinstance(value, bool):
        raise errors.invalid_property_value(path or name, value, "The value must be true or false.")
    return value


def duration(body: Body, name: str, *, minimum: timedelta | None = None, maximum: timedelta | None = None,
             path: str | None = None) -> timedelta | None:
    value = body.get(name)
    label = path or name
    if value is None:
        return None
    try:
        parsed = parse_duration(value)
    except (ValueError, TypeError, AttributeError):
        raise errors.invalid_property_value(label, value, "The value must be an ISO 8601 duration.") from None
    if minimum is not None and parsed < minimum:
        raise errors.invalid_property_value(label, value, f"The value must be at least {minimum}.")
    if maximum is not None and parsed > maximum:
        raise errors.invalid_property_value(label, value, f"The value must be at most {maximum}.")
    return parsed


def obj(body: Body, name: str, *, required: bool = False, path: str | None = None) -> dict[str, Any] | None:
    value = body.get(name)
    label = path or name
    if value is None:
        if required:
            raise errors.missing_required_property(label)
        return None
    if not isinstance(value, dict):
        raise errors.invalid_property_value(label, "(object)", "The value must be an object.")
    return value


def array(body: Body, name: str, *, path: str | None = None) -> list[Any] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list):
        raise errors.invalid_property_value(path or name, "(value)", "The value must be an array.")
    return value


def name_value_pairs(body: Body, name: str) -> list[dict[str, Any]] | None:
    """metadata / environmentSettings: [{"name": str, "value": str?}]."""
    items = array(body, name)
    if items is None:
        return None
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise errors.invalid_property_value(f"{name}[{i}]", "(value)", "Each item must be an object.")
        string(item, "name", required=True, path=f"{name}[{i}].name")
        if item.get("value") is not None and not isinstance(item["value"], str):
            raise errors.invalid_property_value(f"{name}[{i}].value", item["value"], "The value must be a string.")
    return items


def enum(body: Body, name: str, allowed: tuple[str, ...], *, default: str | None = None,
         path: str | None = None) -> str | None:
    """Enum values are case-insensitive on input (the SDK enums are CaseInsensitiveEnumMeta); echoed lower-case."""
    value = string(body, name, path=path)
    if value is None:
        return default
    lowered = value.lower()
    if lowered not in allowed:
        raise errors.invalid_property_value(path or name, value, f"Allowed values: {', '.join(allowed)}.")
    return lowered
