"""run_task against real Azurite and the pinned ffmpeg: one task try on an emulated node."""
from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ContainerClient,
    ContainerSasPermissions,
    generate_blob_sas,
    generate_container_sas,
)

from devstack.azurite import ACCOUNT_KEY, ACCOUNT_NAME
from devstack.batch_emulator.executor import (
    WALL_CLOCK_EXIT_CODE,
    StorageAccess,
    TaskLaunch,
    TaskOutcome,
    run_task,
)

pytestmark = pytest.mark.integration

IDENTITY = {"resourceId": "/subscriptions/0/resourceGroups/rg/providers/Microsoft.ManagedIdentity/"
                          "userAssignedIdentities/batch-nodes"}


@pytest.fixture(scope="module")
def blob_service(storage_connection_string: str) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(storage_connection_string)


@pytest.fixture
def containers(blob_service: BlobServiceClient):
    """Fresh input and output containers per test."""
    suffix = uuid.uuid4().hex[:10]
    made = []

    def make(kind: str) -> ContainerClient:
        client = blob_service.get_container_client(f"{kind}-{suffix}")
        client.create_container()
        made.append(client)
        return client

    yield make
    for client in made:
        client.delete_container()


def _expiry() -> datetime:
    return datetime.now(timezone.utc) + timedelta(hours=1)


def blob_sas_url(container: ContainerClient, blob_name: str) -> str:
    sas = generate_blob_sas(ACCOUNT_NAME, container.container_name, blob_name, account_key=ACCOUNT_KEY,
                            permission=BlobSasPermissions(read=True), expiry=_expiry())
    return f"{container.get_blob_client(blob_name).url}?{sas}"


def container_sas_url(container: ContainerClient, **permissions: bool) -> str:
    sas = generate_container_sas(ACCOUNT_NAME, container.container_name, account_key=ACCOUNT_KEY,
                                 permission=ContainerSasPermissions(**permissions), expiry=_expiry())
    return f"{container.url}?{sas}"


def output(pattern: str, container_url: str, path: str | None = None, condition: str | None = None,
           headers: list[dict] | None = None, identity: dict | None = None) -> dict:
    container: dict = {"containerUrl": container_url}
    if path is not None:
        container["path"] = path
    if headers:
        container["uploadHeaders"] = headers
    if identity:
        container["identityReference"] = identity
    spec: dict = {"filePattern": pattern, "destination": {"container": container}}
    if condition:
        spec["uploadOptions"] = {"uploadCondition": condition}
    return spec


def launch(node_root: Path, command: str, *, resource_files=(), output_files=(), env=(),
           wall_clock: timedelta | None = None, extra_path=(), start_task: bool = False,
           task_id: str = "task-1") -> TaskLaunch:
    return TaskLaunch(
        job_id=None if start_task else "job_a", task_id="starttask" if start_task else task_id,
        pool_id="pool-1", node_id="tvmps_node_0", node_root=node_root, account_name="devbatch",
        account_url="http://127.0.0.1:10100", command_line=command,
        resource_files=list(resource_files), output_files=list(output_files),
        environment_settings=list(env), max_wall_clock=wall_clock, is_start_task=start_task,
        extra_path=list(extra_path))


def run(task: TaskLaunch, connection_string: str | None = None,
        cancel: threading.Event | None = None) -> TaskOutcome:
    return run_task(task, StorageAccess(connection_string), cancel or threading.Event())


def blob_names(container: ContainerClient) -> set[str]:
    return {blob.name for blob in container.list_blobs()}


def test_ffmpeg_task_downloads_converts_and_uploads(containers, stereo_clip, ffmpeg_bin, tmp_path, caplog,
                                                   storage_connection_string):
    inputs, outputs = containers("in"), containers("out")
    inputs.upload_blob("folder/clip one.mp4", stereo_clip.read_bytes())
    out_url = container_sas_url(outputs, write=True, create=True)
    task = launch(
        tmp_path / "node", '/bin/sh -c "ffmpeg -nostdin -loglevel error -i input.mp4 -vn out.mp3"',
        resource_files=[{"httpUrl": blob_sas_url(inputs, "folder/clip one.mp4"), "filePath": "input.mp4"}],
        output_files=[
            output("out.mp3", out_url, path="a b/ü clip.mp3", condition="TaskSuccess",
                   headers=[{"name": "x-ms-meta-source", "value": "clip one.mp4"},
                            {"name": "Content-Type", "value": "audio/mpeg"}]),
            output("../std*.txt", out_url, path="logs/task-1", condition="taskCompletion"),
            output("../stderr.txt", out_url, path="failure/stderr.txt", condition="taskfailure"),
        ],
        extra_path=[ffmpeg_bin])
    caplog.set_level(logging.DEBUG)

    outcome = run(task, storage_connection_string)

    assert (outcome.result, outcome.exit_code, outcome.failure_info, outcome.retryable) == \
        ("success", 0, None, False)
    assert outcome.task_dir == tmp_path / "node" / "workitems" / "job_a" / "job-1" / "task-1"
    assert outcome.start_time <= outcome.end_time
    assert blob_names(outputs) == {"a b/ü clip.mp3", "logs/task-1/stdout.txt", "logs/task-1/stderr.txt"}
    mp3 = outputs.get_blob_client("a b/ü clip.mp3").get_blob_properties()
    assert mp3.size > 1000
    assert mp3.metadata == {"source": "clip one.mp4"}
    assert mp3.content_settings.content_type == "audio/mpeg"
    assert outputs.download_blob("a b/ü clip.mp3").readall()[:3] in (b"ID3", b"\xff\xfb", b"\xff\xf3")
    downloaded = outcome.task_dir / "wd" / "input.mp4"
    assert downloaded.read_bytes() == stereo_clip.read_bytes()
    assert downloaded.stat().st_mode & 0o777 == 0o770          # default fileMode on Linux
    # Never a SAS signature in logs (ours, httpx's, the SDK's) or in the node's upload logs.
    upload_log = (outcome.task_dir / "fileuploadout.txt").read_text()
    assert "a b/ü clip.mp3" in upload_log
    assert any("task.output_file" in r.getMessage() for r in caplog.records)
    for text in [upload_log, *(r.getMessage() for r in caplog.records)]:
        assert not re.search(r"sig=(?!REDACTED)", text), text


def test_container_resource_files_keep_blob_names_under_prefix(containers, tmp_path):
    inputs = containers("in")
    for name in ["set/a.txt", "set/sub/b.txt", "setx/c.txt", "other/d.txt"]:
        inputs.upload_blob(name, name.encode())
    task = launch(tmp_path / "node", "/bin/sh -c 'find inputs -type f | sort > listing.txt'",
                  resource_files=[{"storageContainerUrl": container_sas_url(inputs, read=True, list=True),
                                   "blobPrefix": "set/", "filePath": "inputs", "fileMode": "0640"}])

    outcome = run(task)

    assert outcome.result == "success", outcome.failure_info
    wd = outcome.task_dir / "wd"
    assert (wd / "listing.txt").read_text().split() == ["inputs/set/a.txt", "inputs/set/sub/b.txt"]
    assert (wd / "inputs/set/sub/b.txt").read_text() == "set/sub/b.txt"
    assert (wd / "inputs/set/a.txt").stat().st_mode & 0o777 == 0o640


def test_missing_input_blob_fails_before_the_command_runs(containers, tmp_path):
    inputs = containers("in")
    task = launch(tmp_path / "node", "/bin/sh -c 'touch ran.marker'",
                  resource_files=[{"httpUrl": blob_sas_url(inputs, "nope.mp4"), "filePath": "input.mp4"}])

    outcome = run(task)

    assert outcome.result == "failure"
    assert outcome.exit_code is None and outcome.retryable is False
    info = outcome.failure_info
    assert (info["category"], info["code"]) == ("usererror", "BlobNotFound")
    assert {"name": "FilePath", "value": "input.mp4"} in info["details"]
    assert not (outcome.task_dir / "wd" / "ran.marker").exists()
    assert not (outcome.task_dir / "wd" / "input.mp4").exists()
    assert not (outcome.task_dir / "stdout.txt").exists()


def test_nonzero_exit_reports_failure_exit_code_and_uploads_on_failure_only(containers, tmp_path):
    outputs = containers("out")
    out_url = container_sas_url(outputs, write=True, create=True)
    task = launch(tmp_path / "node", "/bin/sh -c 'echo result > out.txt; echo broken input >&2; exit 3'",
                  output_files=[output("../stderr.txt", out_url, path="errors/task-1.log", condition="TaskFailure"),
                                output("out.txt", out_url, condition="TaskSuccess")])

    outcome = run(task)

    assert (outcome.result, outcome.exit_code, outcome.retryable) == ("failure", 3, True)
    assert outcome.failure_info == {
        "category": "usererror", "code": "FailureExitCode",
        "message": "The task exited with an exit code representing a failure",
        "details": [{"name": "Message", "value": "The task process exited with an unexpected exit code"},
                    {"name": "AdditionalErrorCode", "value": "FailureExitCode"}]}
    assert blob_names(outputs) == {"errors/task-1.log"}
    assert outputs.download_blob("errors/task-1.log").readall() == b"broken input\n"


def test_wall_clock_limit_kills_the_process_group(tmp_path):
    task = launch(tmp_path / "node", "/bin/sh -c 'sleep 30 & echo $! > child.pid; wait'",
                  wall_clock=timedelta(seconds=1))

    began = time.monotonic()
    outcome = run(task)
    elapsed = time.monotonic() - began

    assert elapsed < 5
    assert (outcome.result, outcome.exit_code, outcome.retryable) == ("failure", WALL_CLOCK_EXIT_CODE, False)
    assert WALL_CLOCK_EXIT_CODE == -1073741510
    assert (outcome.failure_info["category"], outcome.failure_info["code"]) == ("servererror", "TaskEnded")
    child = int((outcome.task_dir / "wd" / "child.pid").read_text())
    _assert_gone(child)


def test_cancel_event_terminates_a_running_task(tmp_path):
    cancel = threading.Event()
    task = launch(tmp_path / "node", "/bin/sh -c 'sleep 30 & echo $! > child.pid; wait'")
    threading.Timer(0.5, cancel.set).start()

    began = time.monotonic()
    outcome = run(task, cancel=cancel)

    assert time.monotonic() - began < 5
    assert outcome.result == "failure" and outcome.retryable is False
    assert outcome.failure_info["code"] == "TaskEnded"
    assert outcome.failure_info["category"] == "usererror"
    assert outcome.exit_code == 128 + 9                      # SIGKILL, as a Linux node reports it
    _assert_gone(int((outcome.task_dir / "wd" / "child.pid").read_text()))


def test_cancel_before_start_runs_nothing(tmp_path):
    cancel = threading.Event()
    cancel.set()
    outcome = run(launch(tmp_path / "node", "/bin/sh -c 'touch ran.marker'"), cancel=cancel)
    assert outcome.failure_info["code"] == "TaskEnded" and outcome.exit_code is None
    assert not (outcome.task_dir / "wd" / "ran.marker").exists()


def _assert_gone(pid: int) -> None:
    """The process is dead: vanished, or a zombie waiting for init to reap it (state Z)."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state == "Z":
            return
        time.sleep(0.02)
    pytest.fail(f"process {pid} of the task's group survived the kill")


def _env_of(outcome: TaskOutcome) -> dict[str, str]:
    lines = (outcome.task_dir / "wd" / "env.txt").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def test_az_batch_environment_and_settings_reach_the_command(tmp_path, ffmpeg_bin):
    root = tmp_path / "node"
    task = launch(root, "/bin/sh -c 'env > env.txt'", extra_path=[ffmpeg_bin],
                  env=[{"name": "OUTPUT_NAME", "value": "a b/ü.mp3"}, {"name": "EMPTY"}])

    outcome = run(task)

    assert outcome.result == "success", outcome.failure_info
    env = _env_of(outcome)
    task_dir = root / "workitems" / "job_a" / "job-1" / "task-1"
    assert {key: env.get(key) for key in [
        "AZ_BATCH_ACCOUNT_NAME", "AZ_BATCH_ACCOUNT_URL", "AZ_BATCH_POOL_ID", "AZ_BATCH_NODE_ID",
        "AZ_BATCH_JOB_ID", "AZ_BATCH_TASK_ID", "AZ_BATCH_NODE_IS_DEDICATED", "AZ_BATCH_NODE_ROOT_DIR",
        "AZ_BATCH_NODE_SHARED_DIR", "AZ_BATCH_NODE_STARTUP_DIR", "AZ_BATCH_TASK_DIR",
        "AZ_BATCH_TASK_WORKING_DIR", "OUTPUT_NAME", "EMPTY"]} == {
        "AZ_BATCH_ACCOUNT_NAME": "devbatch", "AZ_BATCH_ACCOUNT_URL": "http://127.0.0.1:10100",
        "AZ_BATCH_POOL_ID": "pool-1", "AZ_BATCH_NODE_ID": "tvmps_node_0", "AZ_BATCH_JOB_ID": "job_a",
        "AZ_BATCH_TASK_ID": "task-1", "AZ_BATCH_NODE_IS_DEDICATED": "true",
        "AZ_BATCH_NODE_ROOT_DIR": str(root), "AZ_BATCH_NODE_SHARED_DIR": str(root / "shared"),
        "AZ_BATCH_NODE_STARTUP_DIR": str(root / "startup"), "AZ_BATCH_TASK_DIR": str(task_dir),
        "AZ_BATCH_TASK_WORKING_DIR": str(task_dir / "wd"), "OUTPUT_NAME": "a b/ü.mp3", "EMPTY": ""}
    assert env["PATH"].split(":")[0] == str(ffmpeg_bin)
    assert (root / "shared").is_dir() and (root / "startup").is_dir()


def test_start_task_runs_in_startup_dir_without_job_variables(tmp_path):
    root = tmp_path / "node"
    outcome = run(launch(root, "/bin/sh -c 'env > env.txt; echo ready > $AZ_BATCH_NODE_SHARED_DIR/flag'",
                         start_task=True))

    assert outcome.result == "success", outcome.failure_info
    assert outcome.task_dir == root / "startup"
    env = _env_of(outcome)
    assert env["AZ_BATCH_TASK_WORKING_DIR"] == str(root / "startup" / "wd")
    assert "AZ_BATCH_JOB_ID" not in env and "AZ_BATCH_TASK_ID" not in env
    assert (root / "shared" / "flag").read_text() == "ready\n"


def test_command_line_is_split_not_shell_interpreted(tmp_path):
    outcome = run(launch(tmp_path / "node", "printf '%s|' \"a b\" '$HOME' c"))
    assert outcome.result == "success"
    assert (outcome.task_dir / "stdout.txt").read_text() == "a b|$HOME|c|"


def test_unknown_program_is_a_launch_failure_not_retried(tmp_path):
    outcome = run(launch(tmp_path / "node", "no-such-program --flag"))
    assert (outcome.result, outcome.exit_code, outcome.retryable) == ("failure", None, False)
    assert (outcome.failure_info["category"], outcome.failure_info["code"]) == ("usererror",
                                                                              "CommandProgramNotFound")


def test_file_path_traversal_is_rejected(containers, tmp_path):
    inputs = containers("in")
    inputs.upload_blob("x.txt", b"x")
    outcome = run(launch(tmp_path / "node", "/bin/sh -c 'touch ran.marker'",
                         resource_files=[{"httpUrl": blob_sas_url(inputs, "x.txt"), "filePath": "../../escape.txt"}]))
    assert outcome.result == "failure" and outcome.failure_info["code"] == "ResourceFileCreateFailed"
    assert not list(tmp_path.rglob("escape.txt"))
    assert not (outcome.task_dir / "wd" / "ran.marker").exists()


def test_identity_reference_resolves_to_the_configured_storage_credential(containers, tmp_path,
                                                                          storage_connection_string):
    inputs, outputs = containers("in"), containers("out")
    inputs.upload_blob("in.txt", b"hello")
    task = launch(tmp_path / "node", "/bin/sh -c 'tr a-z A-Z < in.txt > up.txt'",
                  resource_files=[{"httpUrl": inputs.get_blob_client("in.txt").url, "filePath": "in.txt",
                                   "identityReference": IDENTITY}],
                  output_files=[output("up.txt", outputs.url, path="r/up.txt", identity=IDENTITY)])

    outcome = run(task, storage_connection_string)
    assert outcome.result == "success", outcome.failure_info
    assert outputs.download_blob("r/up.txt").readall() == b"HELLO"

    # Without a configured credential the same identity cannot read the blob.
    denied = run(task, connection_string=None)
    assert (denied.failure_info["category"], denied.failure_info["code"]) == ("usererror", "BlobAccessDenied")


def test_auto_storage_container_resolves_against_configured_account(containers, tmp_path,
                                                                    storage_connection_string):
    inputs = containers("in")
    inputs.upload_blob("p/one.txt", b"1")
    outcome = run(launch(tmp_path / "node", "/bin/sh -c 'cat p/one.txt'",
                         resource_files=[{"autoStorageContainerName": inputs.container_name, "blobPrefix": "p/"}]),
                  storage_connection_string)
    assert outcome.result == "success", outcome.failure_info
    assert (outcome.task_dir / "stdout.txt").read_text() == "1"


def test_upload_to_missing_container_is_a_file_upload_error(blob_service, tmp_path):
    gone = blob_service.get_container_client(f"gone-{uuid.uuid4().hex[:8]}")
    task = launch(tmp_path / "node", "/bin/sh -c 'echo x > out.txt'",
                  output_files=[output("out.txt", container_sas_url(gone, write=True))])

    outcome = run(task)

    assert (outcome.result, outcome.exit_code, outcome.retryable) == ("failure", 0, False)
    assert (outcome.failure_info["category"], outcome.failure_info["code"]) == \
        ("usererror", "FileUploadContainerNotFound")
    assert "ContainerNotFound" in (outcome.task_dir / "fileuploaderr.txt").read_text()
    with pytest.raises(ResourceNotFoundError):
        gone.get_container_properties()


def test_audio_less_input_fails_and_uploads_the_ffmpeg_log(containers, silent_clip, ffmpeg_bin, tmp_path):
    inputs, outputs, logs = containers("in"), containers("out"), containers("logs")
    inputs.upload_blob("silent.mp4", silent_clip.read_bytes())
    task = launch(
        tmp_path / "node",
        "/bin/sh -c 'exec ffmpeg -nostdin -loglevel error -y -i input.mp4 -map 0:a:0 -vn -f mp3 output.mp3 "
        "2> ffmpeg.log'",
        resource_files=[{"httpUrl": blob_sas_url(inputs, "silent.mp4"), "filePath": "input.mp4"}],
        output_files=[output("output.mp3", container_sas_url(outputs, write=True, create=True),
                             path="silent.mp3", condition="tasksuccess"),
                      output("ffmpeg.log", container_sas_url(logs, write=True, create=True),
                             path="task-1/ffmpeg.log", condition="taskfailure")],
        extra_path=[ffmpeg_bin])

    outcome = run(task)

    assert outcome.result == "failure" and outcome.exit_code not in (0, None) and outcome.retryable
    assert outcome.failure_info["code"] == "FailureExitCode"
    assert blob_names(outputs) == set()
    assert b"matches no streams" in logs.download_blob("task-1/ffmpeg.log").readall()


@pytest.fixture
def slow_http_url() -> Iterator[str]:
    """A plain (non-blob) HTTP server that trickles a body out over ~1.5 seconds."""

    class Trickle(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            self.send_response(200)
            self.send_header("Content-Length", str(6 * 1024))
            self.end_headers()
            try:
                for _ in range(6):
                    self.wfile.write(b"x" * 1024)
                    self.wfile.flush()
                    time.sleep(0.25)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/tool.bin?token=secret"
    server.shutdown()
    server.server_close()


def test_wall_clock_also_bounds_resource_downloads(slow_http_url, tmp_path):
    task = launch(tmp_path / "node", "/bin/sh -c 'touch ran.marker'",
                  resource_files=[{"httpUrl": slow_http_url, "filePath": "bin/tool.bin"}],
                  wall_clock=timedelta(seconds=0.4))

    began = time.monotonic()
    outcome = run(task)

    assert time.monotonic() - began < 1.2
    assert (outcome.failure_info["category"], outcome.failure_info["code"]) == ("servererror", "TaskEnded")
    assert outcome.exit_code is None                      # the command never started
    wd = outcome.task_dir / "wd"
    assert not (wd / "ran.marker").exists()
    assert list((wd / "bin").iterdir()) == []             # no partial download left behind


def test_plain_http_resource_file_downloads(slow_http_url, tmp_path):
    outcome = run(launch(tmp_path / "node", "/bin/sh -c 'wc -c < bin/tool.bin'",
                         resource_files=[{"httpUrl": slow_http_url, "filePath": "bin/tool.bin", "fileMode": "0755"}]))
    assert outcome.result == "success", outcome.failure_info
    assert (outcome.task_dir / "stdout.txt").read_text().strip() == str(6 * 1024)
    assert (outcome.task_dir / "wd" / "bin" / "tool.bin").stat().st_mode & 0o777 == 0o755
