"""Test doubles at the app's seams: the submit side of Batch, the ledger store, node access."""
from __future__ import annotations

from azure.batch import models as batch_models

from shared.access import TaskStorageAccess
from shared.batch_types import AddOutcome
from shared.ledger import LedgerRow, State


class FakeBatch:
    """Behaves like the service for ids: case-insensitive uniqueness, TaskExists on repeats."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.tasks: dict[str, batch_models.BatchTaskCreateOptions] = {}
        self.calls: list[str] = []
        self.terminated: set[str] = set()
        self.fail_with = fail_with
        self.jobs: dict[str, str] = {}   # task id (lower case) -> the job it was added to

    def add_task(self, task: batch_models.BatchTaskCreateOptions, job_id: str) -> AddOutcome:
        self.calls.append(f"add_task:{task.id}")
        self.jobs[task.id.lower()] = job_id
        if self.fail_with is not None:
            raise self.fail_with
        key = task.id.lower()
        if key in self.tasks:
            return AddOutcome.ALREADY_EXISTS
        self.tasks[key] = task
        return AddOutcome.CREATED

    def terminate_task(self, job_id: str, task_id: str) -> bool:
        """Like the service: a terminated task completes but still exists (a repeat add is TaskExists)."""
        self.calls.append(f"terminate_task:{task_id}")
        key = task_id.lower()
        if key not in self.tasks or key in self.terminated:
            return False
        self.terminated.add(key)
        return True


class FakeLedger:
    """Insert-only, like shared.ledger.Ledger: a second insert of the same keys is refused."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], LedgerRow] = {}
        self.writes = 0
        self.queries = 0

    def record(self, row: LedgerRow) -> bool:
        self.writes += 1
        key = (row.job_id, row.row_key)
        if key in self.rows:
            return False
        self.rows[key] = row
        return True

    def same_output_rows(self, id_prefix: str, input_name: str, output_name: str) -> list[LedgerRow]:
        self.queries += 1
        return [r for (job, key), r in self.rows.items()
                if key.startswith(f"{id_prefix}-") and (r.input_name == input_name or r.output_name == output_name)]


class FakeAccess:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.versions: list[str | None] = []

    def for_blob(self, container: str, blob_name: str, version_id: str | None = None) -> TaskStorageAccess:
        self.requests.append((container, blob_name))
        self.versions.append(version_id)
        return TaskStorageAccess(f"https://st/{container}/{len(self.requests)}?sig=secret-in",
                                 "https://st/output?sig=secret-out", "https://st/logs?sig=secret-logs", None)
