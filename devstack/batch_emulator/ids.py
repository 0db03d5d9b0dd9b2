"""Id rules shared by pools, jobs and tasks (SDK docstrings of the `id` fields): letters, digits, hyphens and
underscores, at most 64 characters; case-preserving but unique case-insensitively within their scope."""
from __future__ import annotations

import re

from . import errors

_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def key(resource_id: str) -> str:
    """The uniqueness key: ids differing only in case name the same resource."""
    return resource_id.lower()


def validate(resource_id: object, prop: str = "id") -> str:
    if resource_id is None or resource_id == "":
        raise errors.missing_required_property(prop)
    if not isinstance(resource_id, str):
        raise errors.invalid_property_value(prop, resource_id, "The id must be a string.")
    if len(resource_id) > 64:
        raise errors.invalid_property_value(prop, resource_id, "The id must be at most 64 characters long.")
    if not _ID_RE.match(resource_id):
        raise errors.invalid_property_value(
            prop, resource_id, "The id can contain any combination of alphanumeric characters including hyphens "
                               "and underscores.")
    return resource_id
