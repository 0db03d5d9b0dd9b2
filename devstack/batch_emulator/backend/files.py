"""Files of a task on its node (stdout.txt, stderr.txt, wd/...): locate, describe, list.

Paths are relative to the task directory the executor uses (`<node>/workitems/<job>/job-1/<task>`), which is
what the service's file API exposes for a task. Nothing outside it is served, described or deleted: a path that
resolves outside (through a symbolic link the task made) is FileNotFound, and listings leave such links out.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from .. import errors, ids
from ..executor import is_within, task_directory
from ..timeutil import iso
from .state import State


@dataclass(frozen=True)
class TaskFile:
    name: str
    path: Path
    url: str
    is_directory: bool

    def properties(self) -> dict[str, Any]:
        st = self.path.stat()
        props: dict[str, Any] = {
            "creationTime": iso(datetime.fromtimestamp(st.st_ctime, timezone.utc)),
            "lastModified": iso(datetime.fromtimestamp(st.st_mtime, timezone.utc)),
            "contentLength": 0 if self.is_directory else st.st_size,
            "fileMode": format(st.st_mode & 0o7777, "o"),
        }
        if not self.is_directory:
            props["contentType"] = "application/octet-stream"
        return props

    def entry(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "isDirectory": self.is_directory,
                "properties": self.properties()}


class TaskFiles:
    def __init__(self, state: State) -> None:
        self.s = state

    def _root(self, job_id: str, task_id: str) -> tuple[Path, str]:
        with self.s.lock:
            job = self.s.job(job_id)
            if job is None:
                raise errors.job_not_found()
            task = job.tasks.get(ids.key(task_id))
            if task is None:
                raise errors.task_not_found()
            info = task.doc.get("nodeInfo") or {}
            if task.sys.get("cleaned"):
                raise errors.BatchError(409, "TaskFilesCleanedup", "The files of the specified task are cleanedup.")
            if not info.get("nodeId"):
                raise errors.BatchError(409, "TaskFilesUnavailable",
                                        "The files of the specified task are unavailable.")
            root = task_directory(self.s.node_dir(info["poolId"].lower(), info["nodeId"]), job.id, task.id)
            return root, task.doc["url"]

    def get(self, job_id: str, task_id: str, file_path: str) -> TaskFile:
        root, task_url = self._root(job_id, task_id)
        relative = PurePosixPath(file_path)
        if relative.is_absolute() or ".." in relative.parts:
            raise errors.file_not_found()
        path = _resolved_inside(root / relative, root)
        if path is None or not path.exists():
            raise errors.file_not_found()
        return TaskFile(str(relative), path, f"{task_url}/files/{relative}", path.is_dir())

    def list(self, job_id: str, task_id: str, recursive: bool) -> list[TaskFile]:
        root, task_url = self._root(job_id, task_id)
        if not root.exists():
            return []
        entries = root.rglob("*") if recursive else root.iterdir()
        out = []
        for path in sorted(entries):
            if _resolved_inside(path, root) is None:
                continue
            name = path.relative_to(root).as_posix()
            out.append(TaskFile(name, path, f"{task_url}/files/{name}", path.is_dir()))
        return out


def _resolved_inside(path: Path, root: Path) -> Path | None:
    """`path` with symbolic links resolved, if that lies inside `root` (resolved too); else None."""
    resolved = os.path.realpath(path)
    return Path(resolved) if is_within(resolved, os.path.realpath(root)) else None
