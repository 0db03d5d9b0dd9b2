"""The ledger, read for operators: one job's file rows (typed `LedgerRow`s) and the timer's status rows.

Every read goes through `shared.ledger.Ledger`; a missing table reads as an empty ledger.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import Any

from shared.ledger import FILE_ROWS_BELOW, STATUS_PARTITION, Ledger, LedgerRow, State

FAILURE_STATES = (State.FAILED, State.REJECTED)
_OLDEST = datetime.min.replace(tzinfo=timezone.utc)


def detail(row: LedgerRow) -> str | None:
    """Why a file is where it is: ffmpeg's own error line, else Batch's failure message, else the
    trigger's reason (skipped / rejected)."""
    return row.ffmpeg_error or row.failure_message or row.reason


def state_text(row: LedgerRow) -> str:
    """The row's state as plain text (a state this version does not know stays as it was written)."""
    # str() of a str-Enum member is 'State.FAILED', not its value: never print or count the member itself.
    return row.state.value if isinstance(row.state, State) else row.state


def newest_first(row: LedgerRow) -> datetime:
    """Sort key (with reverse=True): last update, else submit time; rows with neither last."""
    return row.updated_at or row.recorded_at or _OLDEST


def _prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string above every string starting with `prefix` (for a ge/lt range)."""
    last = ord(prefix[-1])
    if last >= 0xFFFF:
        return None
    return prefix[:-1] + chr(last + 1)


class LedgerReader:
    """Queries one job's partition of the ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def entries(self, states: Iterable[State] = (), name_prefix: str | None = None) -> Iterator[LedgerRow]:
        # File rows only: the partition also holds completion events' outbox markers, keyed above them.
        clauses, params = ["PartitionKey eq @pk and RowKey lt @files_end"], {"pk": self._ledger.job_id,
                                                                               "files_end": FILE_ROWS_BELOW}
        states = list(states)
        if states:
            params.update({f"s{i}": s.value for i, s in enumerate(states)})
            # Spaces around the parentheses: the SDK substitutes @names in space-separated words only.
            clauses.append("( " + " or ".join(f"State eq @s{i}" for i in range(len(states))) + " )")
        upper = _prefix_upper_bound(name_prefix) if name_prefix else None
        if name_prefix:
            # The RowKey is a transformed name (naming.readable_prefix), so the range runs on InputName.
            clauses.append("InputName ge @lo" + (" and InputName lt @hi" if upper else ""))
            params.update({"lo": name_prefix, **({"hi": upper} if upper else {})})
        for row in self._ledger.rows(" and ".join(clauses), params):
            if name_prefix is None or row.input_name.startswith(name_prefix):
                yield row

    def matching(self, name_or_task_id: str) -> list[LedgerRow]:
        """Rows whose input name or task id (RowKey) is exactly this; several versions of a name may match."""
        query = "PartitionKey eq @pk and ( InputName eq @n or RowKey eq @n )"
        return list(self._ledger.rows(query, {"pk": self._ledger.job_id, "n": name_or_task_id}))

    def table_exists(self) -> bool:
        """False until the first upload creates the ledger table."""
        return self._ledger.table_exists()

    def status_rows(self) -> list[dict[str, Any]]:
        """The timer's status/summary rows (partition STATUS_PARTITION), all columns but the keys."""
        rows = []
        for stored in self._ledger.query("PartitionKey eq @pk", {"pk": STATUS_PARTITION}):
            row = {"row": stored.entity.get("RowKey")}
            row.update({k: _plain(v) for k, v in stored.entity.items() if k not in ("PartitionKey", "RowKey")})
            rows.append(row)
        return rows


def _plain(value: Any) -> Any:
    """Table values (EntityProperty, TablesEntityDatetime, bytes) as JSON-friendly values."""
    value = getattr(value, "value", value)
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return value
