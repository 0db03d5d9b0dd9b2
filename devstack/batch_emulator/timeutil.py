"""Time formats the Batch wire uses: ISO 8601 instants and durations, RFC 1123 headers, ETags."""
from __future__ import annotations

import itertools
import re
import threading
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime, parsedate_to_datetime

import isodate  # dependency of azure-batch itself (the SDK uses it for the same durations)

# .NET TimeSpan.MaxValue as the service writes it for "unlimited" constraints (SPEC examples/Tasks_ListTasks.json).
UNLIMITED_DURATION = "P10675199DT2H48M5.4775807S"
UNLIMITED = timedelta(days=10675199, hours=2, minutes=48, seconds=5, microseconds=477580)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(dt: datetime) -> str:
    """`2026-11-25T12:40:04.123456Z` — fixed width, so equal-precision strings also sort chronologically."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    """Parse an ISO 8601 instant, including the service's 7-digit fractions; naive values are UTC."""
    s = text.strip()
    m = re.match(r"^(.*T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$", s)
    if m is None:
        dt = datetime.fromisoformat(s)
    else:
        frac = m.group(2) or ""
        micro = (frac[1:] + "000000")[:6] if frac else ""
        tz = m.group(3) or "+00:00"
        if tz == "Z":
            tz = "+00:00"
        dt = datetime.fromisoformat(m.group(1) + (("." + micro) if micro else "") + tz)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def rfc1123(dt: datetime) -> str:
    return format_datetime(dt.astimezone(timezone.utc), usegmt=True)


def parse_rfc1123(text: str) -> datetime:
    dt = parsedate_to_datetime(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt


def parse_duration(text: str) -> timedelta:
    """ISO 8601 duration (`PT5M`, `PT05M00S`, `P10675199DT2H48M5.4775807S`) -> timedelta. Raises ValueError."""
    if not isinstance(text, str):
        raise ValueError("duration must be a string")
    if text == UNLIMITED_DURATION:
        return UNLIMITED
    value = isodate.parse_duration(text)
    if not isinstance(value, timedelta):  # years/months are not valid Batch durations
        raise ValueError("years and months are not allowed in a duration")
    if value < timedelta(0):
        raise ValueError("negative duration")
    return value


def format_duration(value: timedelta) -> str:
    """timedelta -> `P1DT2H3M4.5S` (zero parts omitted), the way the service echoes durations."""
    if value >= UNLIMITED:
        return UNLIMITED_DURATION
    total_us = value // timedelta(microseconds=1)
    days, rem = divmod(total_us, 86_400_000_000)
    hours, rem = divmod(rem, 3_600_000_000)
    minutes, rem = divmod(rem, 60_000_000)
    seconds, micros = divmod(rem, 1_000_000)
    out = "P" + (f"{days}D" if days else "")
    time_part = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    if seconds or micros:
        time_part += (f"{seconds}.{micros:06d}".rstrip("0") if micros else str(seconds)) + "S"
    if time_part:
        out += "T" + time_part
    return out if out != "P" else "PT0S"


_etag_lock = threading.Lock()
_etag_counter = itertools.count(1)


def new_etag(now: datetime) -> str:
    """`0x8D...` like the service: hex of .NET ticks, made unique per process by a counter in the low bits."""
    ticks = int((now - datetime(1, 1, 1, tzinfo=timezone.utc)) / timedelta(microseconds=1)) * 10
    with _etag_lock:
        n = next(_etag_counter)
    return "0x" + format(ticks + (n % 10), "X")
