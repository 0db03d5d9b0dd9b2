"""Printing the reports: rich tables for people, JSON for scripts.

Everything printed passes through `shared.log.scrub`: ledger messages and Batch failure texts can
quote resource-file URLs, and a SAS query string or account key must never reach a terminal or
a script's output.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime, timezone
from enum import Enum
from typing import IO, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from shared.ledger import LedgerRow
from shared.log import scrub
from shared.settings import Settings

from . import pool_advice
from .queries import detail, state_text
from .reports import FailureEntry, FilesReport, PoolReport
from .resubmit import ResubmitOutcome, ResubmitResult


def _scrubbed(value: Any) -> Any:
    """Recursively scrub strings and turn dataclasses, enums and datetimes into JSON values."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {str(k): _scrubbed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrubbed(v) for v in value]
    return value


def _cell(value: Any) -> Text:
    """A table cell as literal text: blob names may contain rich markup like '[bold]'."""
    if value is None or value == "":
        return Text("-", style="dim")
    if isinstance(value, datetime):
        return Text(value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ"))
    return Text(scrub(str(value)))


_STATE_STYLE = {"succeeded": "green", "failed": "red", "rejected": "red", "running": "cyan",
                "queued": "yellow", "skipped": "dim"}


def _duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    minutes, secs = divmod(max(seconds, 0.0), 60)
    return f"{int(minutes)}m{secs:04.1f}s" if minutes else f"{secs:.1f}s"


# The JSON a script gets per file: a stable contract, spelt out rather than tied to LedgerRow's layout.
_FILE_FIELDS = (("row_key", "row_key"), ("state", "state"), ("input_container", "input_container"),
                ("input_name", "input_name"), ("input_etag", "input_etag"), ("input_size", "input_size"),
                ("input_content_type", "input_content_type"), ("output_name", "output_name"),
                ("task_id", "task_id"), ("submitted_at", "recorded_at"), ("updated_at", "updated_at"),
                ("started_at", "started_at"), ("ended_at", "ended_at"), ("duration_seconds", "duration_seconds"),
                ("reason", "reason"), ("exit_code", "exit_code"), ("failure_category", "failure_category"),
                ("failure_message", "failure_message"), ("failure_code", "failure_code"),
                ("ffmpeg_error", "ffmpeg_error"), ("retries", "retries"))


def file_json(row: LedgerRow) -> dict[str, Any]:
    data = {key: getattr(row, attribute) for key, attribute in _FILE_FIELDS}
    data["state"] = state_text(row)
    data["detail"] = detail(row)
    return data


class Output:
    def __init__(self, out: IO[str], as_json: bool) -> None:
        self.as_json = as_json
        self._out = out
        # Not a terminal (a pipe, grep, a test): wide enough that no cell wraps, so one row stays one line.
        self.console = Console(file=out, width=None if out.isatty() else 1000, highlight=False,
                               soft_wrap=False)

    def json(self, payload: Any) -> None:
        self._out.write(json.dumps(_scrubbed(payload), indent=2, ensure_ascii=False) + "\n")

    def line(self, text: str, style: str | None = None) -> None:
        self.console.print(Text(scrub(text), style=style or ""))

    def table(self, table: Table) -> None:
        self.console.print(table)


def show_files(out: Output, report: FilesReport, settings: Settings) -> None:
    if out.as_json:
        out.json({"job_id": settings.job_id, "table": settings.ledger_table, "total": report.total,
                  "counts": report.counts, "files": [file_json(r) for r in report.rows]})
        return
    if report.ledger_missing:
        out.line(f"ledger table {settings.ledger_table} does not exist yet: nothing has been uploaded", "yellow")
        return
    table = Table(title=f"files in job {settings.job_id} (newest first)", title_justify="left")
    for column in ("state", "input", "output", "duration", "updated", "reason / failure"):
        table.add_column(column, overflow="fold")
    for r in report.rows:
        state = _cell(state_text(r))
        state.stylize(_STATE_STYLE.get(state_text(r), ""))
        table.add_row(state, _cell(r.input_name), _cell(r.output_name), _cell(_duration(r.duration_seconds)),
                      _cell(r.updated_at), _cell(detail(r)))
    out.table(table)
    shown = f"showing {len(report.rows)} of {report.total}" if len(report.rows) < report.total else f"{report.total} files"
    counts = ", ".join(f"{state} {n}" for state, n in report.counts.items() if n) or "none"
    out.line(f"{shown}: {counts}", "bold")


def _field_table(title: str) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    return table


def show_pool(out: Output, report: PoolReport) -> None:
    problems = pool_advice.explain(report.pool, report.node_counts)
    if out.as_json:
        out.json({**asdict(report), "problems": problems})
        return
    if report.pool is None:
        out.line(f"pool {report.pool_id} does not exist yet (the first upload creates it)", "yellow")
    else:
        p = report.pool
        table = _field_table(f"pool {report.pool_id}")
        table.add_row("state", _cell(f"{p['state']}, allocation {p['allocation_state']} since {p['allocation_state_since']}"))
        table.add_row("vm size", _cell(f"{p['vm_size']}, {p['task_slots_per_node']} task slots per node"))
        table.add_row("autoscale", _cell(f"enabled, every {p['autoscale_interval']}" if p["autoscale_enabled"] else "disabled"))
        run = p["last_autoscale_run"]
        if run:
            table.add_row("last autoscale run", _cell(f"{run['timestamp']}: {run['error'] or run['results']}"))
        table.add_row("dedicated nodes", _cell(f"{p['current_dedicated_nodes']} current / {p['target_dedicated_nodes']} target"))
        table.add_row("low-priority nodes",
                      _cell(f"{p['current_low_priority_nodes']} current / {p['target_low_priority_nodes']} target"))
        for kind, counts in (report.node_counts or {}).items():
            table.add_row(f"{kind.replace('_', '-')} by state", _cell(_counts_text(counts)))
        for error in p["resize_errors"]:
            table.add_row(Text("resize error", style="red"), _cell(error))
        for problem in problems:
            table.add_row(Text("what it means", style="red"), _cell(problem))
        out.table(table)
    if not report.jobs:
        out.line(f"no job {report.job_id}-… exists yet (the first upload of a period creates its job)", "yellow")
    for job in report.jobs:
        tasks = _counts_text(job["tasks"]) if job["tasks"] is not None else "gone"
        out.line(f"job {job['id']} ({job['state']}) tasks: {tasks}")
    if not report.status_rows:
        out.line("no status row from the timer yet")
    for row in report.status_rows:
        table = _field_table(f"timer status row {row['row']}")
        for key, value in row.items():
            if key != "row":
                table.add_row(key, _cell(value))
        out.table(table)


def _counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items())


def show_failures(out: Output, report: list[FailureEntry]) -> None:
    if out.as_json:
        out.json({"failures": [asdict(f) for f in report]})
        return
    if not report:
        out.line("no failed or rejected files", "green")
        return
    table = Table(title="failed and rejected files (newest first)", title_justify="left")
    for column in ("state", "input", "category / code", "exit", "message", "logs"):
        table.add_column(column, overflow="fold")
    for f in report:
        logs = "\n".join(f.logs) if f.logs else (f"{f.logs_prefix} (none uploaded)" if f.logs_prefix else None)
        state = _cell(f.state)
        state.stylize("red")
        category = " / ".join(x for x in (f.category, f.code) if x) or None
        message = "\n".join(x for x in (f.message, f.batch_message) if x) or None
        table.add_row(state, _cell(f.input_name), _cell(category), _cell(f.exit_code), _cell(message), _cell(logs))
    out.table(table)
    counts = Counter(f.state for f in report)
    out.line(", ".join(f"{state} {n}" for state, n in sorted(counts.items())), "bold")


def show_resubmits(out: Output, results: list[ResubmitResult]) -> None:
    if out.as_json:
        out.json({"results": [asdict(r) for r in results]})
        return
    table = Table(title="resubmit", title_justify="left")
    for column in ("input", "task", "outcome", "detail"):
        table.add_column(column, overflow="fold")
    for r in results:
        outcome = _cell(r.outcome.value)
        outcome.stylize("green" if r.outcome is ResubmitOutcome.RESUBMITTED else "yellow")
        table.add_row(_cell(r.input_name), _cell(r.task_id), outcome, _cell(r.detail))
    out.table(table)
    done = sum(r.outcome is ResubmitOutcome.RESUBMITTED for r in results)
    out.line(f"resubmitted {done} of {len(results)}", "bold")
