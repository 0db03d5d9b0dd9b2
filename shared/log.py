"""Structured log lines: one event name plus key=value fields, also attached as `extra`.

The Functions Python worker forwards stdlib log records to the host (Application Insights puts
`extra` fields in customDimensions); the text form keeps local logs greppable. Values are
scrubbed: URLs lose their query string (a SAS is a bearer secret), and anything that looks like
a SAS signature or account key is masked even when it is not a URL.
"""
from __future__ import annotations

import json
import logging
import re
import unicodedata
from typing import Any
from urllib.parse import urlsplit, urlunsplit

LOGGER_NAME = "mp4tomp3"
_URL_RE = re.compile(r"https?://[^\s\"'<>]+")
_SECRET_RE = re.compile(r"(?i)\b(sig|se|skoid|sktid|skv|AccountKey|SharedAccessSignature)=([^;&\s\"']+)")


def get_logger(name: str = "") -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)


def redact_url(url: str) -> str:
    """The URL without query or fragment: what may appear in logs, the ledger and errors."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def scrub(text: str) -> str:
    text = _URL_RE.sub(lambda m: redact_url(m.group(0)), text)
    return _SECRET_RE.sub(lambda m: f"{m.group(1)}=***", text)


def _visible(text: str) -> str:
    """Format and separator characters (bidi overrides, U+2028...) as JSON \\u escapes: the line shows what
    it holds and still decodes to the original."""
    if not any(unicodedata.category(ch) in ("Cf", "Zl", "Zp") for ch in text):
        return text
    return "".join(f"\\u{ord(ch):04x}" if unicodedata.category(ch) in ("Cf", "Zl", "Zp") else ch for ch in text)


def _render(value: Any) -> str:
    if isinstance(value, str):
        return _visible(json.dumps(scrub(value), ensure_ascii=False))
    return json.dumps(value, default=str)


def event(logger: logging.Logger, level: int, name: str, **fields: Any) -> None:
    """Log `name key="value" ...`; None-valued fields are dropped."""
    clean = {k: (scrub(v) if isinstance(v, str) else v) for k, v in fields.items() if v is not None}
    text = " ".join([name, *(f"{k}={_render(v)}" for k, v in clean.items())])
    logger.log(level, text, extra={"event": name, **{f"ctx_{k}": v for k, v in clean.items()}})
