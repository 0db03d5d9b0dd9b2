"""Blob trigger path patterns: `container/{name}`, `container/prefix-{name}.mp4`, `{{literal}}`.

Semantics from the blob trigger docs ("Blob name patterns"): the first segment is
the container (no expressions allowed there); `{token}` binds any text, including
`/`; `{{` and `}}` are literal braces. Matching is anchored at both ends and
greedy, as WebJobs' BindingTemplate builds `(?<token>.*)` captures.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import DevHostError

_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class BlobPathPattern:
    path: str
    container: str = field(init=False)
    list_prefix: str = field(init=False)   # literal text before the first token: server-side filter
    tokens: tuple[str, ...] = field(init=False)
    _regex: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        container, _, blob_part = self.path.partition("/")
        if not container or "{" in container or "}" in container or "%" in container:
            raise DevHostError(f"blob path {self.path!r}: the container name must be literal (no {{...}})")
        regex, prefix, tokens = _compile(blob_part, self.path)
        object.__setattr__(self, "container", container)
        object.__setattr__(self, "list_prefix", prefix)
        object.__setattr__(self, "tokens", tokens)
        object.__setattr__(self, "_regex", regex)

    def match(self, blob_name: str) -> dict[str, str] | None:
        """Token values when `blob_name` (without container) matches, else None."""
        found = self._regex.fullmatch(blob_name)
        return None if found is None else found.groupdict()


def _compile(template: str, path: str) -> tuple[re.Pattern[str], str, tuple[str, ...]]:
    if template == "":
        return re.compile(r".+", re.DOTALL), "", ()  # `container` alone: every blob
    parts: list[str] = []
    tokens: list[str] = []
    prefix: list[str] = []
    seen_token = False
    i = 0
    while i < len(template):
        ch = template[i]
        if template.startswith("{{", i) or template.startswith("}}", i):
            literal = ch
            i += 2
        elif ch == "{":
            end = template.find("}", i)
            name = template[i + 1:end] if end != -1 else ""
            if end == -1 or not _TOKEN.fullmatch(name):
                raise DevHostError(f"blob path {path!r}: bad expression at position {i}")
            if name in tokens:
                raise DevHostError(f"blob path {path!r}: token {{{name}}} appears twice")
            tokens.append(name)
            parts.append(f"(?P<{name}>.*)")
            seen_token = True
            i = end + 1
            continue
        elif ch == "}":
            raise DevHostError(f"blob path {path!r}: unmatched '}}' at position {i}")
        else:
            literal = ch
            i += 1
        parts.append(re.escape(literal))
        if not seen_token:
            prefix.append(literal)
    return re.compile("".join(parts), re.DOTALL), "".join(prefix), tuple(tokens)
