"""The ledger table: one package owns it. `schema` holds the keys, states, columns and the one typed row;
`table` holds every read and write (the only module that imports azure.data.tables).

One row per input blob version, readable in Storage Explorer.
- PartitionKey = the Batch job id: every row of the standing job shares one partition, so the
  reconciler can update up to 100 of them per entity-group transaction.
- RowKey = the task id (`<readable name prefix>-<hash>`, see naming.py): a person finds a file by
  typing the start of its name as a RowKey prefix; the full name is in `InputName`.
- The service's status row (`summary`) and the reconcile watermark (`watermark`) live apart, in
  partition `STATUS_PARTITION` ('~' is not a legal Batch id character, so it can never equal a job
  id, and it sorts last). Partition `~pending` holds a marker per upload whose trigger could not reach
  Batch or storage; the tick retries them.
- Completion events' outbox: a row going final (succeeded, failed, skipped, rejected) brings a marker row
  `~event-<RowKey>` into the same entity-group transaction (same partition), so no final row is ever without
  its pending event; the publisher reads the marker key range (never the file rows), publishes, and records
  `EventId`/`EventPublishedAt`/`EventSinks` on the row while deleting the marker, again in one transaction.
  File rows are the RowKeys below '~'.

Writes at submit are insert-only (a late `queued` must never replace `succeeded`); every later write
is conditional on the ETag read (or an upsert-merge for adoption), so concurrent writers cannot
regress a row. The first write that finds the table missing creates it; reading a missing table
reads as empty.
"""
from __future__ import annotations

from .schema import (
    FILE_ROWS_BELOW,
    FINAL_STATES,
    MAX_ROWS_PER_COMMIT,
    MAX_TRANSACTION,
    OUTBOX_PREFIX,
    OUTCOME_STATES,
    PENDING_PARTITION,
    STATUS_PARTITION,
    SUMMARY_ROW,
    WATERMARK_ROW,
    Col,
    LedgerRow,
    RowChanged,
    RowWrite,
    State,
    StoredRow,
)
from .table import Ledger

__all__ = ["FILE_ROWS_BELOW", "FINAL_STATES", "MAX_ROWS_PER_COMMIT", "MAX_TRANSACTION", "OUTBOX_PREFIX", "OUTCOME_STATES", "PENDING_PARTITION", "STATUS_PARTITION", "SUMMARY_ROW", "WATERMARK_ROW", "Col", "Ledger",
           "LedgerRow", "RowChanged", "RowWrite", "State", "StoredRow"]
