"""All I/O on the ledger table: the only code in the app that talks to Table Storage.

Writes at submit are insert-only (a late `queued` must never replace `succeeded`); every later write
is conditional on the ETag read (or an upsert-merge for adoption), so concurrent writers cannot
regress a row. The first write that finds the table missing creates it; reading a missing table
reads as empty.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from .schema import (
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

_READ_WORKERS = 8


def _stored(entity: Any) -> StoredRow:
    return StoredRow(dict(entity), entity.metadata.get("etag"))


_OUTBOX_END = OUTBOX_PREFIX[:-1] + chr(ord(OUTBOX_PREFIX[-1]) + 1)


class Ledger:
    """The ledger table of one job, over the process's one `TableClient`.

    `outbox`: completion events are on (EVENTS_SINK is not `none`): every write that makes a file row final
    carries its outbox marker in the same transaction."""

    def __init__(self, table: TableClient, job_id: str, *, outbox: bool = False) -> None:
        self._table = table
        self.job_id = job_id
        self.outbox = outbox
        self._create_lock = threading.Lock()

    def record(self, row: LedgerRow) -> bool:
        """Insert the row; False when a row for that blob version already exists. A row that is final at once
        (skipped, rejected) is inserted together with its outbox marker, atomically."""
        entity = row.to_entity()
        marker = self._marker_for(entity)
        try:
            if marker is None:
                self._insert(entity)
            else:
                self._transact([("create", entity), ("upsert", marker, {"mode": UpdateMode.REPLACE})])
            return True
        except ResourceExistsError:
            return False

    def same_output_rows(self, id_prefix: str, input_name: str, output_name: str) -> list[LedgerRow]:
        """Every version of `input_name`, and rows of other names that write the same MP3: one RowKey range
        read in the job's partition. All of them share the readable prefix (task ids are `<prefix>-<hash>`,
        and names that differ only in their extension's case have the same prefix); '.' sorts right after '-'."""
        query = (f"PartitionKey eq @job and RowKey ge @low and RowKey lt @high and "
                 f"( {Col.INPUT_NAME} eq @name or {Col.OUTPUT_NAME} eq @out )")
        # Only what submit decides on: this runs on every upload, and a name may have many versions.
        select = ["PartitionKey", "RowKey", Col.STATE, Col.INPUT_CONTAINER, Col.INPUT_NAME, Col.OUTPUT_NAME,
                  Col.TASK_ID, Col.JOB_ID, Col.SUBMITTED_AT]
        return list(self.rows(query, {"job": self.job_id, "low": f"{id_prefix}-", "high": f"{id_prefix}.",
                                      "name": input_name, "out": output_name}, select=select))

    # -- reads --------------------------------------------------------------------------------------
    def get(self, row_key: str, *, partition: str | None = None, select: list[str] | None = None) -> StoredRow | None:
        try:
            return _stored(self._table.get_entity(partition or self.job_id, row_key, select=select))
        except ResourceNotFoundError:  # no row, or no table yet
            return None

    def read_rows(self, row_keys: Sequence[str], *, scan: bool = False,
                  select: list[str] | None = None) -> dict[str, StoredRow]:
        """The existing rows among `row_keys`: parallel point reads, or one paged scan of the partition.

        Point reads stay O(1) however large the partition grows (it keeps every file ever seen), so they
        are the default; a caller that wants most of the partition anyway (a first run) asks for the scan.
        An OR-of-RowKeys filter is not used: the service would scan the partition for each one."""
        if not row_keys:
            return {}
        if scan:
            wanted = set(row_keys)
            return {row.entity["RowKey"]: row for row in self.query("PartitionKey eq @pk", {"pk": self.job_id},
                                                                     select=select)
                    if row.entity["RowKey"] in wanted}
        with ThreadPoolExecutor(max_workers=min(_READ_WORKERS, len(row_keys))) as pool:
            found = list(pool.map(lambda key: self.get(key, select=select), row_keys))
        return {key: row for key, row in zip(row_keys, found) if row is not None}

    def query(self, query: str, parameters: dict[str, Any], *, select: list[str] | None = None) -> Iterator[StoredRow]:
        """Rows matching an OData filter with @parameters, paged 1000 at a time; none when no table."""
        try:
            for entity in self._table.query_entities(query, parameters=parameters, results_per_page=1000,
                                                     select=select):
                yield _stored(entity)
        except ResourceNotFoundError:
            return

    def rows(self, query: str, parameters: dict[str, Any], *,
             select: list[str] | None = None) -> Iterator[LedgerRow]:
        """Typed rows of this job's partition matching the filter (which must name the partition); columns
        left out by `select` read as absent."""
        return (LedgerRow.from_entity(row.entity, row.etag) for row in self.query(query, parameters, select=select))

    def table_exists(self) -> bool:
        try:
            next(iter(self._table.query_entities("PartitionKey eq @pk", parameters={"pk": STATUS_PARTITION},
                                                 results_per_page=1, select=["RowKey"])), None)
            return True
        except ResourceNotFoundError:
            return False

    def unfinished_page(self, cursor: dict[str, str] | None, size: int) -> tuple[list[LedgerRow], dict[str, str] | None]:
        """One page of this job's rows still queued or running, from `cursor` (None: the start); the cursor of
        the next page, None after the last. The service bounds each page's work, so one call is bounded too."""
        query = (f"PartitionKey eq @pk and ({Col.STATE} eq '{State.QUEUED.value}' "
                 f"or {Col.STATE} eq '{State.RUNNING.value}')")
        try:
            pages = self._table.query_entities(query, parameters={"pk": self.job_id}, results_per_page=size).by_page(
                continuation_token=cursor)
            page = [LedgerRow.from_entity(e, e.metadata.get("etag")) for e in next(pages, [])]
            return page, pages.continuation_token
        except ResourceNotFoundError:
            return [], None

    # -- uploads whose trigger failed -----------------------------------------------------------------
    def remember_pending(self, key: str, container: str, name: str, error: str, now: datetime) -> None:
        """Insert or refresh the marker of an upload the trigger could not submit."""
        entity = {"PartitionKey": PENDING_PARTITION, "RowKey": key, Col.INPUT_CONTAINER: container,
                  Col.INPUT_NAME: name, Col.ERROR: error[:1024], Col.FAILED_AT: now}
        try:
            self._table.upsert_entity(entity)
        except ResourceNotFoundError:
            self._create_table()
            self._table.upsert_entity(entity)

    def flag_pending(self, now: datetime) -> None:
        """Tell the timer there are markers: one column merged into the status row it reads every tick, so
        a tick with nothing pending costs no read of the markers."""
        self._table.upsert_entity({"PartitionKey": STATUS_PARTITION, "RowKey": SUMMARY_ROW, Col.PENDING_SINCE: now},
                                  mode=UpdateMode.MERGE)

    def pending(self, limit: int) -> list[StoredRow]:
        """Up to `limit` markers, oldest key first."""
        rows = self.query("PartitionKey eq @pk", {"pk": PENDING_PARTITION})
        return [row for _, row in zip(range(limit), rows)]

    def forget_pending(self, key: str, etag: str | None) -> None:
        """Drop a marker handled, unless the trigger failed again for it since it was read."""
        try:
            self._table.delete_entity(PENDING_PARTITION, key, etag=etag, match_condition=MatchConditions.IfNotModified)
        except (ResourceNotFoundError, ResourceModifiedError):
            pass

    # -- writes -------------------------------------------------------------------------------------
    def commit(self, writes: Sequence[RowWrite]) -> str | None:
        """Write rows of this job's partition in entity-group transactions; None on success, else why not
        (412: a row changed since it was read; 404: a row was deleted): the caller re-reads and redoes.

        A write that makes a row final carries its outbox marker in the same transaction. Up to
        MAX_ROWS_PER_COMMIT writes always fit one transaction; more (up to 100) may take two."""
        assert len(writes) <= MAX_TRANSACTION
        groups: list[list[tuple]] = []
        for w in writes:
            op = (w.kind, w.entity, {"mode": UpdateMode.MERGE, "etag": w.etag,
                                     "match_condition": MatchConditions.IfNotModified}) \
                if w.kind == "update" else (w.kind, w.entity, {"mode": UpdateMode.MERGE})
            marker = self._marker_for(w.entity)
            groups.append([op] if marker is None else [op, ("upsert", marker, {"mode": UpdateMode.REPLACE})])
        batch: list[tuple] = []
        for group in groups:
            if len(batch) + len(group) > MAX_TRANSACTION:
                error = self._try_transact(batch)
                if error is not None:
                    return error
                batch = []
            batch.extend(group)
        return self._try_transact(batch) if batch else None

    # -- completion events' outbox (shared/events.py) -----------------------------------------------------
    def _marker_for(self, entity: dict[str, Any]) -> dict[str, Any] | None:
        """The outbox marker a write brings along: only for a file row it makes final, only with events on."""
        state = entity.get(Col.STATE)
        if not self.outbox or state not in OUTCOME_STATES or entity.get("PartitionKey") != self.job_id:
            return None
        marker = {"PartitionKey": self.job_id, "RowKey": OUTBOX_PREFIX + entity["RowKey"],
                  Col.EVENT_ROW: entity["RowKey"], Col.EVENT_OUTCOME: state}
        if entity.get(Col.UPDATED_AT) is not None:
            marker[Col.UPDATED_AT] = entity[Col.UPDATED_AT]
        return marker

    def outbox_page(self, limit: int) -> list[StoredRow]:
        """Up to `limit` outbox markers: one read of the marker key range, never of the file rows."""
        query = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
        try:
            pages = self._table.query_entities(query, parameters={"pk": self.job_id, "lo": OUTBOX_PREFIX,
                                                                  "hi": _OUTBOX_END},
                                               results_per_page=limit).by_page()
            return [_stored(e) for e in next(pages, [])][:limit]
        except ResourceNotFoundError:
            return []

    def settle_event(self, marker: StoredRow, columns: dict[str, Any]) -> bool:
        """Record what was published on the file row and delete its marker, in one transaction; False when the
        marker changed since it was read (the row went final again: its new event is still to publish)."""
        row_key = marker.entity[Col.EVENT_ROW]
        try:
            self._table.submit_transaction([
                ("update", {"PartitionKey": self.job_id, "RowKey": row_key, **columns}, {"mode": UpdateMode.MERGE}),
                ("delete", {"PartitionKey": self.job_id, "RowKey": marker.entity["RowKey"]},
                 {"etag": marker.etag, "match_condition": MatchConditions.IfNotModified}),
            ])
            return True
        except (TableTransactionError, ResourceNotFoundError, ResourceModifiedError):
            return False

    def drop_marker(self, marker: StoredRow) -> None:
        """Delete a marker whose row is no longer final (run again) or gone, unless it changed since read."""
        try:
            self._table.delete_entity(self.job_id, marker.entity["RowKey"], etag=marker.etag,
                                      match_condition=MatchConditions.IfNotModified)
        except (ResourceNotFoundError, ResourceModifiedError):
            pass

    def _try_transact(self, operations: list[tuple]) -> str | None:
        try:
            self._transact(operations)
            return None
        except (TableTransactionError, ResourceNotFoundError, ResourceExistsError) as exc:
            return str(getattr(exc, "error_code", None) or exc.status_code)

    def _transact(self, operations: list[tuple]) -> None:
        """One entity-group transaction, creating the table once if it is missing. An insert that finds its
        row raises ResourceExistsError, as a single insert would."""
        for attempt in (1, 2):
            try:
                self._table.submit_transaction(operations)
                return
            except (TableTransactionError, ResourceNotFoundError) as exc:
                code = str(getattr(exc, "error_code", None) or exc.status_code)
                if isinstance(exc, TableTransactionError) and "EntityAlreadyExists" in code:
                    raise ResourceExistsError(code) from exc
                table_missing = isinstance(exc, ResourceNotFoundError) or "TableNotFound" in code
                if attempt == 2 or exc.status_code != 404 or not table_missing:
                    raise
                self._create_table()

    def replace(self, entity: dict[str, Any], etag: str | None) -> str:
        """Replace a row if unchanged since `etag` was read; the new ETag. Raises RowChanged."""
        try:
            return self._table.update_entity(entity, mode=UpdateMode.REPLACE, etag=etag,
                                             match_condition=MatchConditions.IfNotModified)["etag"]
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise RowChanged(str(exc)) from exc

    # -- the status partition: the status row and the reconcile watermark ---------------------------
    def read_status(self) -> StoredRow | None:
        return self.get(SUMMARY_ROW, partition=STATUS_PARTITION)

    def write_status(self, columns: dict[str, Any], etag: str | None) -> bool:
        """Insert (etag None) or replace-if-unchanged the status row; False when another tick wrote first."""
        entity = {"PartitionKey": STATUS_PARTITION, "RowKey": SUMMARY_ROW, **columns}
        return self._write_status_partition(entity, etag, UpdateMode.REPLACE)

    def read_watermark(self) -> StoredRow | None:
        return self.get(WATERMARK_ROW, partition=STATUS_PARTITION)

    def write_watermark(self, value: datetime | None, etag: str | None, now: datetime,
                        listing: Mapping[str, Any] | None = None) -> bool:
        """Write the watermark and the unfinished listing's columns (none: no listing in progress), replacing
        the row read; False when another tick wrote it first."""
        entity = {"PartitionKey": STATUS_PARTITION, "RowKey": WATERMARK_ROW, Col.UPDATED_AT: now,
                  **({Col.WATERMARK: value} if value is not None else {}),
                  **{k: v for k, v in (listing or {}).items() if v is not None}}
        return self._write_status_partition(entity, etag, UpdateMode.REPLACE)

    def _write_status_partition(self, entity: dict[str, Any], etag: str | None, mode: UpdateMode) -> bool:
        try:
            if etag is None:
                self._insert(entity)
            else:
                self._table.update_entity(entity, mode=mode, etag=etag, match_condition=MatchConditions.IfNotModified)
            return True
        except (ResourceExistsError, HttpResponseError):  # 409 / 412: another writer was first
            return False

    def _insert(self, entity: dict[str, Any]) -> None:
        try:
            self._table.create_entity(entity)
        except ResourceNotFoundError:
            # TableNotFound: first write into a fresh account; create it, then insert once more.
            self._create_table()
            self._table.create_entity(entity)

    def _create_table(self) -> None:
        with self._create_lock:
            try:
                self._table.create_table()
            except ResourceExistsError:
                pass
