"""Run one Batch task on an emulated Linux compute node, the way the Batch node agent does.

One call of `run_task` is one try of a task (or of a pool's start task): make the node's
directories, download resource files, run the command line (not in a shell) in its own process
group with the AZ_BATCH_* environment, enforce maxWallClockTime and the cancel event, upload
output files by their upload condition, and report the result as the REST executionInfo fields.
Retries, requeues and task state belong to the scheduler that calls this.

Sources (non-obvious behaviour is cited where it is implemented):
- [ENV]  learn.microsoft.com/azure/batch/batch-compute-node-environment-variables
- [OUT]  learn.microsoft.com/azure/batch/batch-task-output-files (output files, upload errors)
- [ERR]  learn.microsoft.com/rest/api/batchservice/batch-status-and-error-codes
         ("task scheduling error codes" table: code, category, user message)
- [EH]   learn.microsoft.com/azure/batch/error-handling (maxWallClockTime -> TaskEnded)
- [SDK]  azure-batch 15.1.0 model docstrings: ResourceFile, OutputFile,
         OutputFileBlobContainerDestination, BatchTaskExecutionInfo, BatchTaskConstraints

Emulator choices where the sources are silent: a terminated task (cancel event) reports the
killed process's 128+SIGKILL exit code and uploads nothing; a pattern without wildcards that
matches no file is not an error (like a wildcard matching nothing); maxWallClockTime bounds
downloads and the command, not uploads; a nonzero exit outranks an upload error in failureInfo.

Confinement (issue 14; the emulator's rule, not the service's): a node here is the developer's own
machine, so the emulator reads and writes files only inside the task directory (the one holding
`wd/`, `stdout.txt`, `stderr.txt`), resolved with symbolic links followed. A resource file whose
target resolves outside it fails the task with ResourceFileCreateFailed; an output filePattern
that leads outside it (absolute, `..`, `$VAR`, or a symbolic link) uploads nothing from there and
fails the task with FileUploadMiscError. Wildcards do not descend into symbolically linked
directories. The task's stdout/stderr and upload logs are never written through a link.
"""
from __future__ import annotations

import errno
import fnmatch
import io
import logging
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath

from devstack.batch_emulator.storage_transfer import (
    AccountKeyAccess,
    TransferFailure,
    TransferInterrupted,
    UploadOptions,
    container_client,
    download_blob,
    download_url,
    list_container_blobs,
    redact_url,
    upload_file,
)

log = logging.getLogger(__name__)

START_TASK_ID = "starttask"
# [EH]: a task that exceeds maxWallClockTime completes with exit code 0xC000013A; as the REST
# Int32 exitCode that is -1073741510 (the value Batch Explorer users report for timeouts).
WALL_CLOCK_EXIT_CODE = 0xC000013A - (1 << 32)
DEFAULT_FILE_MODE = 0o770          # [SDK] ResourceFile.file_mode: default 0770 on Linux nodes
# A Linux node image's default PATH; the emulator's extra dirs (pinned ffmpeg) go in front.
NODE_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_POLL_SECONDS = 0.05
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


# ---------------------------------------------------------------------------------------------
# Public interface
# ---------------------------------------------------------------------------------------------

@dataclass
class StorageAccess:
    """How identityReference and autoStorageContainerName resolve locally."""

    connection_string: str | None


@dataclass
class TaskLaunch:
    job_id: str | None                 # None for a start task
    task_id: str                       # "starttask" for a start task
    pool_id: str
    node_id: str
    node_root: Path
    account_name: str
    account_url: str
    command_line: str
    resource_files: list[dict]         # REST JSON (camelCase) exactly as the client sent it
    output_files: list[dict]
    environment_settings: list[dict]   # [{"name": .., "value": ..}]
    max_wall_clock: timedelta | None
    retry_count: int = 0
    is_dedicated: bool = True
    is_start_task: bool = False
    extra_path: Sequence[Path] = ()


@dataclass
class TaskOutcome:
    exit_code: int | None
    result: str                        # "success" | "failure"
    failure_info: dict | None          # REST JSON: {"category","code","message","details":[{"name","value"}]}
    start_time: datetime
    end_time: datetime
    retryable: bool                    # True only for a nonzero exit of the command itself
    task_dir: Path


def task_directory(node_root: Path, job_id: str | None, task_id: str) -> Path:
    """The task directory on the node ([ENV] "directory location" tables).

    Job tasks: `<root>/workitems/<jobId>/job-1/<taskId>`; the start task: `<root>/startup`.
    """
    if job_id is None:
        return node_root / "startup"
    for value in (job_id, task_id):
        if not _ID_RE.match(value):
            raise ValueError(f"not a valid Batch id: {value!r}")
    return node_root / "workitems" / job_id / "job-1" / task_id


def set_aside(directory: Path) -> Path:
    """Move a deleted task's (or job's) directory out of the way at once, under the scheduler's lock, and
    return where it went for later removal: a task or job added again under the same id must get a fresh
    directory, not one the trash collector deletes under it."""
    aside = directory.with_name(f"{directory.name}.deleted-{os.urandom(4).hex()}")
    try:
        directory.rename(aside)
    except FileNotFoundError:
        return directory
    return aside


def http_source(resource_file: dict) -> str | None:
    """The single-file URL of a resource file. api-versions before 2018-12-01.8.0 call it `blobSource` (what
    azure-batch <= 5.x and the ffmpeg tutorial send); from then on it is `httpUrl`."""
    return resource_file.get("httpUrl") or resource_file.get("blobSource")


def resource_file_problem(resource_file: dict) -> str | None:
    """Why a resourceFiles entry is invalid per [SDK] ResourceFile, or None if it is valid.

    For add-time validation by the HTTP layer; `run_task` applies the same rules defensively.
    """
    sources = [key for key in ("httpUrl", "blobSource", "storageContainerUrl", "autoStorageContainerName")
               if resource_file.get(key)]
    if len(sources) != 1:
        return ("exactly one of httpUrl, storageContainerUrl and autoStorageContainerName "
                "must be specified")
    single_file = sources[0] in ("httpUrl", "blobSource")
    if resource_file.get("blobPrefix") and single_file:
        return "blobPrefix is valid only with autoStorageContainerName or storageContainerUrl"
    file_path = resource_file.get("filePath")
    if single_file and (not file_path or _relative_inside(file_path) == PurePosixPath()):
        return f"filePath is required with {sources[0]} and must name a file"
    if file_path and _relative_inside(file_path) is None:
        return "filePath must be a relative path that stays inside the task working directory"
    mode = resource_file.get("fileMode")
    if mode is not None and not re.fullmatch(r"0?[0-7]{3,4}", str(mode)):
        return "fileMode must be an octal permission string such as 0770"
    return None


def run_task(launch: TaskLaunch, storage: StorageAccess, cancel: threading.Event) -> TaskOutcome:
    """Run one try of a task; blocking, thread-safe, never raises for task-level failures."""
    return _TaskRun(launch, storage, cancel).run()


# ---------------------------------------------------------------------------------------------
# failureInfo codes ([ERR] table unless noted)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FailureCode:
    code: str
    category: str      # REST values: "usererror" | "servererror"
    message: str

    def info(self, details: Sequence[tuple[str, str]] = ()) -> dict:
        return {"category": self.category, "code": self.code, "message": self.message,
                "details": [{"name": name, "value": value} for name, value in details]}


BLOB_NOT_FOUND = FailureCode("BlobNotFound", "usererror", "One of the specified Azure Blob(s) is not found.")
BLOB_ACCESS_DENIED = FailureCode("BlobAccessDenied", "usererror",
                                 "Access for one of the specified Azure Blob(s) is denied.")
BLOB_DOWNLOAD_TIMED_OUT = FailureCode("BlobDownloadTimedOut", "servererror",
                                      "Timeout encountered while downloading one of the specified Azure Blob(s).")
BLOB_DOWNLOAD_MISC = FailureCode("BlobDownloadMiscError", "servererror",
                                 "Miscellaneous error encountered while downloading one of the specified "
                                 "Azure Blob(s).")
RESOURCE_DIRECTORY_CREATE_FAILED = FailureCode("ResourceDirectoryCreateFailed", "servererror",
                                               "Failure encountered creating resource directory for the task.")
RESOURCE_FILE_CREATE_FAILED = FailureCode("ResourceFileCreateFailed", "servererror",
                                          "Failure encountered creating resource file.")
RESOURCE_FILE_WRITE_FAILED = FailureCode("ResourceFileWriteFailed", "servererror",
                                         "Failure encountered writing resource file.")
DISK_FULL = FailureCode("DiskFull", "servererror",
                        "There is not enough disk space on the node that was selected to run the task.")
COMMAND_PROGRAM_NOT_FOUND = FailureCode("CommandProgramNotFound", "usererror",
                                        "The specified command program is not found.")
COMMAND_LAUNCH_FAILED = FailureCode("CommandLaunchFailed", "usererror",
                                    "Failed to launch the specified command line.")
TASK_ENDED_BY_USER = FailureCode("TaskEnded", "usererror", "Task was ended by user request.")
# [EH]: a wall-clock expiry is reported as {category: ServerError, code: TaskEnded}; the message
# wording is the emulator's (the docs give none for this case).
TASK_ENDED_WALL_CLOCK = FailureCode("TaskEnded", "servererror",
                                    "Task was ended because it exceeded its maximum wall clock time.")
# Message and details as captured from the service (executionInfo of a real nonzero exit).
FAILURE_EXIT_CODE = FailureCode("FailureExitCode", "usererror",
                                "The task exited with an exit code representing a failure")
# [OUT] "Diagnose file upload errors" (code, category and message quoted there).
FILE_UPLOAD_CONTAINER_NOT_FOUND = FailureCode(
    "FileUploadContainerNotFound", "usererror",
    "One of the specified Azure container(s) was not found while attempting to upload an output file")
# Code from Microsoft.Azure.Batch.Common.TaskFailureInformationCodes (its doc text as message);
# the service reports it for uploads refused for auth as well (github.com/Azure/Batch/issues/171).
FILE_UPLOAD_MISC = FailureCode("FileUploadMiscError", "usererror",
                               "The compute node hit an unexpected error when uploading Output Files.")

UNKNOWN = FailureCode("Unknown", "servererror", "An unknown scheduling error has occurred.")

_DOWNLOAD_FAILURES: dict[str, FailureCode] = {
    "not_found": BLOB_NOT_FOUND,
    "access_denied": BLOB_ACCESS_DENIED,
    "timeout": BLOB_DOWNLOAD_TIMED_OUT,
    "misc": BLOB_DOWNLOAD_MISC,
    "local_create": RESOURCE_FILE_CREATE_FAILED,
    "local_write": RESOURCE_FILE_WRITE_FAILED,
    "disk_full": DISK_FULL,
}


# ---------------------------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------------------------

class _ResourceFileFailed(Exception):
    def __init__(self, failure: FailureCode, details: list[tuple[str, str]]) -> None:
        super().__init__(failure.code)
        self.failure = failure
        self.details = details


class _StopSignal:
    """Why the run must stop now, if it must: the cancel event or the wall-clock deadline."""

    def __init__(self, cancel: threading.Event, max_wall_clock: timedelta | None) -> None:
        self._cancel = cancel
        self._deadline = (time.monotonic() + max_wall_clock.total_seconds()
                          if max_wall_clock is not None else None)

    def reason(self) -> str | None:
        if self._cancel.is_set():
            return "cancelled"
        if self._deadline is not None and time.monotonic() >= self._deadline:
            return "wall_clock"
        return None

    def __call__(self) -> bool:
        return self.reason() is not None

    def wait(self, seconds: float) -> None:
        self._cancel.wait(seconds)


@dataclass
class _ProcessResult:
    exit_code: int | None
    stopped_by: str | None            # "cancelled" | "wall_clock" | None
    launch_failure: FailureCode | None = None
    launch_error: str = ""


class _TaskRun:
    def __init__(self, launch: TaskLaunch, storage: StorageAccess, cancel: threading.Event) -> None:
        self.launch = launch
        self.storage = storage
        self.stop = _StopSignal(cancel, launch.max_wall_clock)
        job_id = None if launch.is_start_task else launch.job_id
        self.task_dir = task_directory(launch.node_root, job_id, launch.task_id)
        self.working_dir = self.task_dir / "wd"
        self.label = f"job={launch.job_id or '-'} task={launch.task_id} node={launch.node_id}"
        self.start_time = _utcnow()
        self._key_access: AccountKeyAccess | None = None
        self.root_real = os.path.realpath(self.task_dir)  # set again once the directories are checked

    # -- orchestration ---------------------------------------------------------------------------

    def run(self) -> TaskOutcome:
        log.info("task.start %s try=%d", self.label, self.launch.retry_count)
        try:
            return self._run()
        except Exception:  # an emulator bug must not take down the node's worker thread
            log.exception("task.internal_error %s", self.label)
            return self._outcome(None, UNKNOWN.info())

    def _run(self) -> TaskOutcome:
        try:
            self._make_directories()
        except OSError as exc:
            log.warning("task.directories_failed %s error=%s", self.label, exc.strerror)
            return self._outcome(None, RESOURCE_DIRECTORY_CREATE_FAILED.info([("Message", str(exc.strerror))]))
        env = self._environment()

        try:
            self._download_resource_files()
        except TransferInterrupted:
            return self._stopped_outcome(None)
        except _ResourceFileFailed as failed:
            log.warning("task.resource_file_failed %s code=%s", self.label, failed.failure.code)
            return self._outcome(None, failed.failure.info(failed.details))
        if self.stop():
            return self._stopped_outcome(None)

        process = self._run_command(env)
        if process.launch_failure is not None:
            # Pre-processing error: the command never ran, nothing is uploaded ([OUT]) or retried ([SDK]).
            return self._outcome(None, process.launch_failure.info([("Message", process.launch_error)]))
        if process.stopped_by == "cancelled":
            # Terminated by request (or its node is going away): the try ends here, no uploads.
            return self._stopped_outcome(process.exit_code)

        upload_failure = self._upload_output_files(process.exit_code, env)
        if process.stopped_by == "wall_clock":
            return self._stopped_outcome(process.exit_code, "wall_clock")
        if process.exit_code != 0:
            # A nonzero exit outranks an upload error, as exitConditions do ([SDK] ExitConditions).
            return self._outcome(process.exit_code, FAILURE_EXIT_CODE.info([
                ("Message", "The task process exited with an unexpected exit code"),
                ("AdditionalErrorCode", FAILURE_EXIT_CODE.code),
            ]), retryable=True)
        if upload_failure is not None:
            return self._outcome(process.exit_code, upload_failure)  # [SDK]: upload errors are not retried
        return self._outcome(process.exit_code, None)

    def _outcome(self, exit_code: int | None, failure_info: dict | None, retryable: bool = False) -> TaskOutcome:
        result = "failure" if failure_info is not None else "success"
        outcome = TaskOutcome(exit_code=exit_code, result=result, failure_info=failure_info,
                              start_time=self.start_time, end_time=_utcnow(),
                              retryable=retryable and failure_info is not None, task_dir=self.task_dir)
        log.info("task.end %s result=%s exit_code=%s code=%s", self.label, result, exit_code,
                 failure_info["code"] if failure_info else "-")
        return outcome

    def _stopped_outcome(self, exit_code: int | None, reason: str | None = None) -> TaskOutcome:
        reason = reason or self.stop.reason()
        if reason == "wall_clock":
            # [EH]: TaskEnded with exit code 0xC000013A when the process was running.
            code = WALL_CLOCK_EXIT_CODE if exit_code is not None else None
            return self._outcome(code, TASK_ENDED_WALL_CLOCK.info())
        return self._outcome(exit_code, TASK_ENDED_BY_USER.info())

    # -- node layout and environment --------------------------------------------------------------

    def _make_directories(self) -> None:
        root = self.launch.node_root
        for directory in (root / "shared", root / "startup", root / "fsmounts"):
            directory.mkdir(parents=True, exist_ok=True)
        # The task directory and wd/ are the emulator's: a symbolic link a previous try left in their place
        # (anywhere below the node root) is removed, so the confinement root really is this task's directory.
        current = root
        for part in self.working_dir.relative_to(root).parts:
            current = current / part
            if current.is_symlink():
                current.unlink()
            current.mkdir(exist_ok=True)
        expected = os.path.join(os.path.realpath(root), *self.working_dir.relative_to(root).parts)
        if os.path.realpath(self.working_dir) != expected:
            raise OSError(errno.ELOOP, "the task directory is reached through a symbolic link")
        self.root_real = os.path.realpath(self.task_dir)

    def _inside_task_dir(self, path: Path) -> bool:
        return is_within(os.path.realpath(path), self.root_real)

    def _environment(self) -> dict[str, str]:
        launch = self.launch
        root = launch.node_root
        env: dict[str, str] = {"PATH": NODE_SYSTEM_PATH, "HOME": str(self.working_dir), "LANG": "C.UTF-8"}
        for setting in launch.environment_settings:
            env[str(setting["name"])] = str(setting.get("value") or "")
        # [ENV]: the service's variables; JOB_ID and TASK_ID are absent for a start task.
        env.update({
            "AZ_BATCH_ACCOUNT_NAME": launch.account_name,
            "AZ_BATCH_ACCOUNT_URL": launch.account_url,
            "AZ_BATCH_POOL_ID": launch.pool_id,
            "AZ_BATCH_NODE_ID": launch.node_id,
            "AZ_BATCH_NODE_IS_DEDICATED": "true" if launch.is_dedicated else "false",
            "AZ_BATCH_NODE_ROOT_DIR": str(root),
            "AZ_BATCH_NODE_SHARED_DIR": str(root / "shared"),
            "AZ_BATCH_NODE_STARTUP_DIR": str(root / "startup"),
            "AZ_BATCH_NODE_MOUNTS_DIR": str(root / "fsmounts"),
            "AZ_BATCH_TASK_DIR": str(self.task_dir),
            "AZ_BATCH_TASK_WORKING_DIR": str(self.working_dir),
        })
        if not launch.is_start_task:
            env["AZ_BATCH_JOB_ID"] = launch.job_id or ""
            env["AZ_BATCH_TASK_ID"] = launch.task_id
        if launch.extra_path:
            env["PATH"] = os.pathsep.join([*(str(p) for p in launch.extra_path), env["PATH"]])
        return env

    # -- resource files --------------------------------------------------------------------------

    def _download_resource_files(self) -> None:
        for resource_file in self.launch.resource_files:
            if self.stop():
                raise TransferInterrupted()
            file_path = resource_file.get("filePath") or ""
            problem = resource_file_problem(resource_file)
            if problem is not None:
                raise _ResourceFileFailed(RESOURCE_FILE_CREATE_FAILED,
                                          [("FilePath", file_path), ("Message", problem)])
            try:
                self._download_one(resource_file)
            except TransferFailure as failure:
                raise _ResourceFileFailed(_DOWNLOAD_FAILURES.get(failure.kind, BLOB_DOWNLOAD_MISC),
                                          [("FilePath", file_path), ("Message", failure.detail)]) from failure

    def _download_one(self, resource_file: dict) -> None:
        mode = int(str(resource_file["fileMode"]), 8) if resource_file.get("fileMode") else DEFAULT_FILE_MODE
        key_access = self._identity_access(resource_file.get("identityReference"))
        target = self.working_dir / (_relative_inside(resource_file.get("filePath") or "") or PurePosixPath())
        url = http_source(resource_file)
        if url:
            self._check_write_target(target, resource_file.get("filePath") or "")
            size = download_url(url, target, self.stop, key_access, mode)
            log.info("task.resource_file %s source=%s path=%s bytes=%d", self.label, redact_url(url),
                     resource_file["filePath"], size)
            return
        if resource_file.get("autoStorageContainerName"):
            container = self._auto_storage().named_container(resource_file["autoStorageContainerName"])
        else:
            container = container_client(resource_file["storageContainerUrl"], key_access)
        prefix = resource_file.get("blobPrefix")
        names = list_container_blobs(container, prefix)
        for name in names:
            relative = _relative_inside(name)
            if relative is None:
                raise TransferFailure("local_create", f"blob name escapes the target directory: {name}")
            destination = target / relative
            self._check_write_target(destination, name)
            size = download_blob(container, name, destination, self.stop, mode)
            log.info("task.resource_file %s source=%s blob=%s bytes=%d", self.label,
                     redact_url(container.url), name, size)
        log.info("task.resource_container %s source=%s prefix=%s blobs=%d", self.label,
                 redact_url(container.url), prefix or "", len(names))

    def _check_write_target(self, target: Path, named: str) -> None:
        """A download may only land in a directory that resolves inside the task directory: a symbolic
        link a previous try left on the way (wd/sub -> /home/me) is not followed. (A link at `target`
        itself is replaced by the download, not written through.)"""
        if not self._inside_task_dir(target.parent):
            raise TransferFailure("local_create", f"{named}: the target directory resolves outside the task "
                                                  "directory (symbolic link); nothing was written")

    def _identity_access(self, identity_reference: dict | None) -> AccountKeyAccess | None:
        """A managed identity resolves to the emulator's configured storage credential."""
        if not identity_reference:
            return None
        if not self.storage.connection_string:
            raise TransferFailure("access_denied", "identityReference given but the emulator has no "
                                                   "storage credential configured")
        return self._account_key_access()

    def _auto_storage(self) -> AccountKeyAccess:
        if not self.storage.connection_string:
            raise TransferFailure("misc", "autoStorageContainerName given but the emulator has no "
                                          "auto-storage account configured")
        return self._account_key_access()

    def _account_key_access(self) -> AccountKeyAccess:
        if self._key_access is None:
            try:
                self._key_access = AccountKeyAccess.from_connection_string(self.storage.connection_string or "")
            except ValueError as exc:
                raise TransferFailure("misc", f"unusable storage connection string: {type(exc).__name__}") from exc
        return self._key_access

    # -- the command -------------------------------------------------------------------------------

    def _run_command(self, env: dict[str, str]) -> _ProcessResult:
        # The command line is not run in a shell; the Linux agent splits it like a POSIX shell
        # would, without expansion ([ENV] "Command-line expansion of environment variables").
        try:
            argv = shlex.split(self.launch.command_line)
        except ValueError as exc:
            return _ProcessResult(None, None, COMMAND_LAUNCH_FAILED, f"unparsable command line: {exc}")
        if not argv:
            return _ProcessResult(None, None, COMMAND_LAUNCH_FAILED, "empty command line")
        with _open_task_log(self.task_dir / "stdout.txt") as stdout, \
                _open_task_log(self.task_dir / "stderr.txt") as stderr:
            try:
                # Popen resolves argv[0] on the *task's* PATH and relative to the working dir.
                process = subprocess.Popen(argv, cwd=self.working_dir, env=env, stdin=subprocess.DEVNULL,
                                           stdout=stdout, stderr=stderr, start_new_session=True)
            except FileNotFoundError:
                return _ProcessResult(None, None, COMMAND_PROGRAM_NOT_FOUND, f"{argv[0]}: not found")
            except OSError as exc:
                return _ProcessResult(None, None, COMMAND_LAUNCH_FAILED, f"{argv[0]}: {exc.strerror}")
            log.info("task.process_started %s pid=%d", self.label, process.pid)
            stopped_by = self._wait(process)
        return _ProcessResult(_exit_code(process.returncode), stopped_by)

    def _wait(self, process: subprocess.Popen) -> str | None:
        while not _has_exited(process):
            reason = self.stop.reason()
            if reason is not None:
                _kill_group(process)
                log.info("task.process_killed %s pid=%d reason=%s", self.label, process.pid, reason)
                return reason
            self.stop.wait(_POLL_SECONDS)
        # The main process is gone; anything it left in its group goes with it.
        _kill_group(process)
        return None

    # -- output files ------------------------------------------------------------------------------

    def _upload_output_files(self, exit_code: int | None, env: dict[str, str]) -> dict | None:
        """Upload every output file whose condition holds; the first failure's failureInfo, if any."""
        due = [spec for spec in self.launch.output_files if _condition_holds(spec, exit_code)]
        if not due:
            return None
        first_failure: dict | None = None
        # [OUT]: every upload writes fileuploadout.txt / fileuploaderr.txt in the task directory.
        with _open_task_log(self.task_dir / "fileuploadout.txt", append=True) as out_raw, \
                _open_task_log(self.task_dir / "fileuploaderr.txt", append=True) as err_raw, \
                io.TextIOWrapper(out_raw, encoding="utf-8") as out_log, \
                io.TextIOWrapper(err_raw, encoding="utf-8") as err_log:
            for spec in due:
                failure = self._upload_one(spec, env, out_log, err_log)
                if failure is not None and first_failure is None:
                    first_failure = failure
        return first_failure

    def _upload_one(self, spec: dict, env: dict[str, str], out_log, err_log) -> dict | None:
        pattern = str(spec.get("filePattern") or "")
        container_spec = (spec.get("destination") or {}).get("container") or {}
        container_url = str(container_spec.get("containerUrl") or "")
        try:
            key_access = self._identity_access(container_spec.get("identityReference"))
            container = container_client(container_url, key_access)
            options = UploadOptions.from_upload_headers(container_spec.get("uploadHeaders") or [])
        except (TransferFailure, ValueError) as exc:
            detail = exc.detail if isinstance(exc, TransferFailure) else f"invalid upload settings: {exc}"
            err_log.write(f"{_stamp()} {pattern}: {detail}\n")
            return FILE_UPLOAD_MISC.info([("FilePattern", pattern), ("Message", detail)])
        found = find_output_files(pattern, self.working_dir, env, root=self.task_dir)
        matches = found.files
        failure: dict | None = None
        for refused in found.refused:
            detail = f"{refused} is outside the task directory; not uploaded"
            err_log.write(f"{_stamp()} {pattern}: {detail}\n")
            log.warning("task.output_file_refused %s pattern=%s path=%s", self.label, pattern, refused)
            failure = failure or FILE_UPLOAD_MISC.info([("FilePattern", pattern), ("Message", detail)])
        if not matches and not found.refused:
            out_log.write(f"{_stamp()} {pattern}: no files matched\n")
        for local_path, relative_name in matches:
            blob_name = _blob_name(container_spec.get("path"), relative_name, has_wildcards=_has_magic(pattern))
            try:
                size = upload_file(container, blob_name, local_path, options)
            except TransferFailure as exc:
                err_log.write(f"{_stamp()} {local_path} -> {redact_url(container_url)}/{blob_name}: {exc.detail}\n")
                log.warning("task.output_file_failed %s pattern=%s container=%s error=%s", self.label,
                            pattern, redact_url(container_url), exc.detail)
                code = FILE_UPLOAD_CONTAINER_NOT_FOUND if exc.kind == "container_not_found" else FILE_UPLOAD_MISC
                failure = failure or code.info([("FilePattern", pattern), ("Message", exc.detail)])
                continue
            out_log.write(f"{_stamp()} {local_path} -> {redact_url(container_url)}/{blob_name} ({size} bytes)\n")
            log.info("task.output_file %s container=%s blob=%s bytes=%d", self.label,
                     redact_url(container_url), blob_name, size)
        return failure


# ---------------------------------------------------------------------------------------------
# Output file patterns ([SDK] OutputFile.file_pattern)
# ---------------------------------------------------------------------------------------------

_ENV_REFERENCE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_MAGIC = re.compile(r"[*?[]")


@dataclass
class OutputMatches:
    files: list[tuple[Path, str]]      # (resolved local path inside the task directory, upload name)
    refused: list[str]                 # what the pattern reached outside the task directory, not uploaded


def find_output_files(pattern: str, working_dir: Path, env: dict[str, str], root: Path | None = None
                      ) -> OutputMatches:
    """Files matching an output filePattern, each with the name it uploads under, confined to `root`.

    $VAR references are expanded from the task's environment first; relative patterns start at
    the working directory (`../stdout.txt` reaches the task directory); `*`, `?`, `[abc]`, `[!a]`
    work within a path segment, `**` spans directories, and names starting with "." match only a
    pattern segment that starts with "." too. Without wildcards the upload name is the file's
    name; with wildcards it is the path below the pattern's last wildcard-free directory.

    `root` (default: the working directory's parent, the task directory) bounds what may be read:
    the pattern's wildcard-free part is resolved (symbolic links followed) and must lie inside it,
    wildcards do not enter symbolically linked directories, and a matched symbolic link is used
    only if it resolves inside it. What lies outside is listed in `refused`, never in `files`.
    """
    root_real = os.path.realpath(root if root is not None else working_dir.parent)
    expanded = _ENV_REFERENCE.sub(lambda m: env.get(m.group(1) or m.group(2), m.group(0)), pattern)
    path = PurePosixPath(expanded)
    anchor = Path(path.anchor) if path.is_absolute() else working_dir
    segments = path.parts[1:] if path.is_absolute() else path.parts
    first_magic = next((i for i, segment in enumerate(segments) if _MAGIC.search(segment)), None)
    literal = segments if first_magic is None else segments[:first_magic]
    base = os.path.realpath(anchor.joinpath(*literal))
    if not is_within(base, root_real):
        return OutputMatches([], [expanded])
    if first_magic is None:
        name = Path(os.path.normpath(anchor.joinpath(*segments))).name if segments else Path(base).name
        return OutputMatches([(Path(base), name)] if os.path.isfile(base) else [], [])
    rest = segments[first_magic:]
    if ".." in rest:
        return OutputMatches([], [expanded])   # climbing after a wildcard: refused rather than resolved
    if not os.path.isdir(base):
        return OutputMatches([], [])
    files: list[tuple[Path, str]] = []
    refused: list[str] = []
    for relative in sorted(set(_walk_pattern(Path(base), rest)), key="/".join):
        name = "/".join(relative)
        local = Path(base, *relative)
        if local.is_symlink():
            resolved = os.path.realpath(local)
            if not is_within(resolved, root_real):
                refused.append(f"{name} (a symbolic link to {resolved})")
            elif os.path.isfile(resolved):
                files.append((Path(resolved), name))
        elif local.is_file():
            files.append((local, name))
    return OutputMatches(files, refused)


def match_output_files(pattern: str, working_dir: Path, env: dict[str, str], root: Path | None = None
                       ) -> list[tuple[Path, str]]:
    """The files `find_output_files` would upload (anything refused left out)."""
    return find_output_files(pattern, working_dir, env, root).files


def _walk_pattern(directory: Path, segments: Sequence[str]) -> Iterator[tuple[str, ...]]:
    """Paths (as name tuples below `directory`) matching wildcard `segments`, like glob's recursive mode
    without hidden names, except that no symbolically linked directory is entered."""

    def entries(where: Path) -> list[os.DirEntry]:
        try:
            with os.scandir(where) as it:
                return list(it)
        except OSError:
            return []

    def walk(where: Path, relative: tuple[str, ...], i: int) -> Iterator[tuple[str, ...]]:
        if i == len(segments):
            yield relative
            return
        segment, last = segments[i], i == len(segments) - 1
        if segment == "**":
            yield from walk(where, relative, i + 1)          # zero directories
            for entry in entries(where):
                if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
                    yield from walk(where / entry.name, relative + (entry.name,), i)
        elif _MAGIC.search(segment):
            for entry in entries(where):
                if entry.name.startswith(".") and not segment.startswith("."):
                    continue
                if not fnmatch.fnmatchcase(entry.name, segment):
                    continue
                if last:
                    yield relative + (entry.name,)
                elif entry.is_dir(follow_symlinks=False):
                    yield from walk(where / entry.name, relative + (entry.name,), i + 1)
        elif segment not in ("", "."):
            child = where / segment
            if last:
                if os.path.lexists(child):
                    yield relative + (segment,)
            elif child.is_dir() and not child.is_symlink():
                yield from walk(child, relative + (segment,), i + 1)
        else:
            yield from walk(where, relative, i + 1)

    return walk(directory, (), 0)


def _has_magic(pattern: str) -> bool:
    return bool(_MAGIC.search(pattern))


def _blob_name(path: str | None, relative_name: str, has_wildcards: bool) -> str:
    """[SDK] OutputFileBlobContainerDestination.path: the blob name for a single file, the
    virtual directory prepended to each match for a wildcard pattern, the file name if omitted."""
    if not path:
        return relative_name
    if not has_wildcards:
        return path
    return f"{path.rstrip('/')}/{relative_name}"


def _condition_holds(spec: dict, exit_code: int | None) -> bool:
    options = spec.get("uploadOptions") or {}
    condition = str(options.get("uploadCondition") or "taskcompletion").lower()
    if condition == "tasksuccess":
        return exit_code == 0
    if condition == "taskfailure":
        return exit_code != 0
    return True


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------

def _relative_inside(file_path: str) -> PurePosixPath | None:
    """`file_path` as a normalized relative path, or None if it is absolute or climbs out."""
    if not file_path:
        return PurePosixPath()
    path = PurePosixPath(file_path)
    if path.is_absolute():
        return None
    normalized = PurePosixPath(os.path.normpath(path.as_posix()))
    if normalized.parts and normalized.parts[0] == "..":
        return None
    return PurePosixPath() if normalized == PurePosixPath(".") else normalized


def is_within(resolved: str, root_real: str) -> bool:
    """`resolved` (a realpath) is `root_real` or lies below it."""
    return bool(root_real) and (resolved == root_real or resolved.startswith(root_real.rstrip(os.sep) + os.sep))


def _open_task_log(path: Path, append: bool = False):
    """Open a file the agent writes in the task directory (stdout.txt, fileuploadout.txt ...) as a binary
    stream, never through a symbolic link: a link a previous try left there is removed first."""
    if path.is_symlink():
        path.unlink()
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    flags |= os.O_APPEND if append else os.O_TRUNC
    return os.fdopen(os.open(path, flags, 0o666), "ab" if append else "wb")


def _has_exited(process: subprocess.Popen) -> bool:
    """Whether the process has exited, *without* reaping it: while its zombie holds the pid, the
    process group id cannot be reused, so `_kill_group` can never hit someone else's group."""
    return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the task's process group (its own session), then reap the leader."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def _exit_code(returncode: int | None) -> int | None:
    # Death by signal reads as the shell convention 128+N, as a Linux node reports it.
    if returncode is not None and returncode < 0:
        return 128 - returncode
    return returncode


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _stamp() -> str:
    return _utcnow().isoformat(timespec="milliseconds")
