"""Structured logs for the dev host: key=value (default, for terminals) or JSON lines.

Every record emitted while a function runs carries the invocation id and function
name (taken from context variables set by the invoker), so the app's own
`logging` calls are correlated exactly like the real host correlates worker logs.
"""
from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

LOGGER_NAME = "devhost"

invocation_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("invocation_id", default=None)
function_name_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("function_name", default=None)

# Attributes every LogRecord has; anything else was passed through `extra=` and is a field.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def get_logger(name: str | None = None) -> logging.Logger:
    return logging.getLogger(LOGGER_NAME if name is None else f"{LOGGER_NAME}.{name}")


class InvocationContextFilter(logging.Filter):
    """Stamps `invocation_id` / `function` from the current invocation onto each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "invocation_id", None) is None:
            record.invocation_id = invocation_id_var.get()
        if getattr(record, "function", None) is None:
            record.function = function_name_var.get()
        return True


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
        "level": record.levelname,
        "logger": record.name,
    }
    for key, value in vars(record).items():
        if key not in _STANDARD_ATTRS and value is not None and not key.startswith("_"):
            fields[key] = value
    fields["msg"] = record.getMessage()
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = record_fields(record)
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return json.dumps(fields, default=str, ensure_ascii=False)


def _kv_value(value: Any) -> str:
    text = str(value)
    if text == "" or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = " ".join(f"{k}={_kv_value(v)}" for k, v in record_fields(record).items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(fmt: str = "kv", level: str | int = "INFO", stream=None) -> logging.Handler:
    """Install one handler on the root logger (CLI use; tests keep pytest's logging)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    handler.addFilter(InvocationContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The Azure SDK logs every HTTP request at INFO; keep the dev host's output readable.
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("uvicorn").setLevel(logging.WARNING)
    return handler
