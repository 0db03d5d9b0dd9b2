"""Issue 14, reproduced: each test mounts one attack from the security review against a real emulator and checks
that it now fails (and, where it helps, that the same request made legitimately still works).

1. DNS rebinding / web pages: the account key is the published sample key, so a page that can reach the
   emulator can sign requests. Only loopback Host values are served, and nothing that carries an Origin header.
2. Admin routes take a cross-origin "simple" POST (text/plain) unless they require a header a page cannot send.
3. Files: output filePatterns and resource-file targets stay inside the task directory, symbolic links included;
   the task's own stdout/stderr are not written through a link a previous try left.
4. The account key is not on any emulator command line (`ps`).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from azure.batch import models as m
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

from devstack import azurite
from devstack import stack as devstack_stack
from devstack.batch_emulator.access import ADMIN_HEADERS
from devstack.batch_emulator.config import DEFAULT_ACCOUNT_KEY

from .helpers import job_options, pool_options, send, shell_task, signed, wait_idle_nodes, wait_task_completed

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
API = "api-version=2025-06-01"


# --- helpers -------------------------------------------------------------------------------------------------

@pytest.fixture
def ready(batch_emulator):
    """A one-node pool (so a retry runs in the same task directory) and a job."""
    client = batch_emulator.client()
    client.create_pool(pool_options("sec", target_dedicated_nodes=1, task_slots_per_node=2))
    wait_idle_nodes(client, "sec", 1)
    client.create_job(job_options("job", "sec"))
    return client


@pytest.fixture
def output_container(storage_connection_string, azurite_ports):
    svc = BlobServiceClient.from_connection_string(storage_connection_string)
    name = f"sec-{uuid.uuid4().hex[:10]}"
    container = svc.create_container(name)
    token = generate_container_sas(azurite.ACCOUNT_NAME, name, account_key=azurite.ACCOUNT_KEY,
                                   permission=ContainerSasPermissions(write=True, create=True),
                                   expiry=datetime.now(timezone.utc) + timedelta(hours=1))
    yield container, f"{azurite_ports.blob_endpoint}/{name}?{token}"
    container.delete_container()


def _output(pattern: str, container_url: str, path: str | None = None) -> m.OutputFile:
    return m.OutputFile(file_pattern=pattern,
                        destination=m.OutputFileDestination(container=m.OutputFileBlobContainerDestination(
                            container_url=container_url, path=path)),
                        upload_options=m.OutputFileUploadConfiguration(
                            upload_condition=m.OutputFileUploadCondition.TASK_COMPLETION))


def _uploaded(container) -> dict[str, bytes]:
    return {b.name: container.download_blob(b.name).readall() for b in container.list_blobs()}


def _secret(tmp_path: Path) -> Path:
    """A file of the user's outside every task directory."""
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir(exist_ok=True)
    secret.write_text("the user's private data\n")
    return secret


def _task_body(task_id: str, marker: Path) -> bytes:
    return json.dumps({"id": task_id, "commandLine": f"/bin/sh -c 'touch {marker}'"}).encode()


def _signed(emu, method: str, path: str, body: bytes | None = None, **headers: str):
    return signed(method, f"{emu.url}{path}?{API}", emu.account_name, emu.account_key, body=body, headers=headers)


def _port(emu) -> int:
    return int(emu.url.rsplit(":", 1)[1])


# --- 1. Host and Origin ----------------------------------------------------------------------------------------

def test_rebinding_host_is_refused_and_no_task_runs(batch_emulator, ready, tmp_path):
    """A page on rebind.attacker.example whose name now resolves to 127.0.0.1 signs a task add with the
    published key. Its browser sends the page's own name as Host: refused, nothing is created or run."""
    emu, client = batch_emulator, ready
    marker = tmp_path / "pwned"
    response = send(_signed(emu, "POST", "/jobs/job/tasks", _task_body("rebound", marker),
                            Host=f"rebind.attacker.example:{_port(emu)}"))
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["code"] == "InvalidHeaderValue"
    assert {v["key"]: v["value"] for v in error["values"]}["HeaderName"] == "Host"
    assert "rebind.attacker.example" not in error["odata.metadata"]
    time.sleep(1.0)  # would have been plenty for the task to run
    assert not marker.exists()
    with pytest.raises(HttpResponseError) as missing:
        client.get_task("job", "rebound")
    assert missing.value.error.code == "TaskNotFound"
    assert emu.stats()["operations"].get("Task_Add", 0) == 0

    # The same signed request addressed to loopback is what the app sends: it runs.
    ok = send(_signed(emu, "POST", "/jobs/job/tasks", _task_body("local", marker)))
    assert ok.status_code == 201, ok.text
    wait_task_completed(client, "job", "local")
    assert marker.exists()


@pytest.mark.parametrize("host, allowed", [
    ("127.0.0.1", True), ("127.0.0.1:{port}", True), ("localhost", True), ("LocalHost:{port}", True),
    ("[::1]", True), ("[::1]:{port}", True),
    ("rebind.attacker.example", False), ("localhost.attacker.example", False), ("127.0.0.1.nip.io:{port}", False),
    ("attacker.example:{port}", False), ("127.0.0.2:{port}", False), ("0.0.0.0:{port}", False),
    ("[::ffff:127.0.0.1]:{port}", False), ("localhost:{port}@attacker.example", False), ("", False),
])
def test_only_loopback_host_values_are_served(batch_emulator, host, allowed):
    emu = batch_emulator
    response = send(_signed(emu, "GET", "/jobs", Host=host.format(port=_port(emu))))
    assert response.status_code == (200 if allowed else 400), response.text
    admin = httpx.get(f"{emu.url}/_emulator/health", headers={**ADMIN_HEADERS, "Host": host.format(port=_port(emu))})
    assert admin.status_code == (200 if allowed else 400), admin.text


def test_request_with_origin_is_refused_and_no_task_runs(batch_emulator, ready, tmp_path):
    """Any page (even one served from localhost) adds Origin to a cross-origin or non-GET request."""
    emu, client = batch_emulator, ready
    marker = tmp_path / "pwned"
    for origin in ("http://evil.example", "null", f"http://127.0.0.1:{_port(emu)}"):
        response = send(_signed(emu, "POST", "/jobs/job/tasks", _task_body("from-page", marker), Origin=origin))
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "RequestFromWebPageNotAllowed"
        assert "access-control-allow-origin" not in response.headers
    listed = send(_signed(emu, "GET", "/jobs", Origin="http://evil.example"))
    assert listed.status_code == 403
    site = send(_signed(emu, "GET", "/jobs", **{"Sec-Fetch-Site": "cross-site"}))
    assert site.status_code == 403
    time.sleep(1.0)
    assert not marker.exists()
    assert [t.id for t in client.list_tasks("job")] == []
    # CORS preflight: never granted.
    preflight = httpx.options(f"{emu.url}/jobs/job/tasks?{API}", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,ocp-date"})
    assert preflight.status_code == 403
    assert not any(h.lower().startswith("access-control-allow") for h in preflight.headers)


# --- 2. Admin routes -----------------------------------------------------------------------------------------

def test_cross_origin_style_text_plain_post_to_faults_needs_the_admin_header(batch_emulator):
    """A page can POST text/plain to any URL without a preflight; it cannot add x-emulator-admin."""
    emu = batch_emulator
    attack = json.dumps({"rate": 1.0, "status": 503})
    simple = {"Content-Type": "text/plain;charset=UTF-8"}
    refused = httpx.post(f"{emu.url}/_emulator/faults", content=attack, headers=simple)
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "EmulatorAdminHeaderRequired"
    assert emu.admin("GET", "faults")["rate"] == 0  # unchanged
    from_page = httpx.post(f"{emu.url}/_emulator/faults", content=attack,
                           headers={**simple, **ADMIN_HEADERS, "Origin": "http://evil.example"})
    assert from_page.status_code == 403 and from_page.json()["code"] == "RequestFromWebPageNotAllowed"
    assert emu.admin("GET", "faults")["rate"] == 0
    for path in ("health", "stats", "meter", "faults"):
        assert httpx.get(f"{emu.url}/_emulator/{path}").status_code == 403
    assert httpx.delete(f"{emu.url}/_emulator/faults").status_code == 403
    assert httpx.post(f"{emu.url}/_emulator/stats/reset", headers={"x-emulator-admin": "0"}).status_code == 403

    # The same body with the header (what the test fixture and bench send) is accepted.
    accepted = httpx.post(f"{emu.url}/_emulator/faults", content=attack, headers={**simple, **ADMIN_HEADERS})
    assert accepted.status_code == 200, accepted.text
    assert emu.admin("GET", "faults")["rate"] == 1.0
    emu.admin("DELETE", "faults")


# --- 3. Files ------------------------------------------------------------------------------------------------

def test_symlink_to_outside_file_is_not_uploaded(ready, output_container, tmp_path):
    """The task leaves wd/leak.txt -> ~/secret; its output pattern *.txt matches the link."""
    client, (container, url) = ready, output_container
    secret = _secret(tmp_path)
    client.create_task("job", shell_task(
        "leak", f"echo fine > ok.txt; ln -s {secret} leak.txt; ln -s {secret.parent} linkdir",
        output_files=[_output("*.txt", url, "wild"), _output("leak.txt", url, "single/leak.txt"),
                      _output("linkdir/*.txt", url, "viadir"), _output("**/secret.txt", url, "deep"),
                      _output("../std*.txt", url, "logs")]))
    info = wait_task_completed(client, "job", "leak").execution_info
    uploaded = _uploaded(container)
    assert secret.read_bytes() not in uploaded.values(), sorted(uploaded)
    # What lies inside the task directory is still uploaded, including the agent's ../std*.txt.
    assert sorted(uploaded) == ["logs/stderr.txt", "logs/stdout.txt", "wild/ok.txt"]
    assert info.exit_code == 0 and info.result == m.BatchTaskExecutionResult.FAILURE
    assert info.failure_info.code == "FileUploadMiscError"
    assert info.failure_info.category == m.BatchErrorSourceCategory.USER_ERROR
    details = {d.name: d.value for d in info.failure_info.details}
    assert "outside the task directory" in details["Message"]
    err_log = b"".join(client.download_task_file("job", "leak", "fileuploaderr.txt")).decode()
    assert "outside the task directory" in err_log


@pytest.mark.parametrize("make_pattern", [
    pytest.param(lambda secret: str(secret), id="absolute"),
    pytest.param(lambda secret: str(secret.parent) + "/*.txt", id="absolute-wildcard"),
    pytest.param(lambda secret: "../" * 40 + str(secret).lstrip("/"), id="dotdot"),
    pytest.param(lambda secret: "../" * 40 + str(secret.parent).lstrip("/") + "/secret*", id="dotdot-wildcard"),
    pytest.param(lambda secret: "../../" + "../" * 40 + str(secret).lstrip("/"), id="dotdot-from-task-dir"),
    pytest.param(lambda secret: "*/../" + "../" * 40 + str(secret).lstrip("/"), id="dotdot-after-wildcard"),
    pytest.param(lambda secret: "$AZ_BATCH_NODE_ROOT_DIR/" + "../" * 40 + str(secret).lstrip("/"), id="env"),
])
def test_output_pattern_outside_the_task_directory_uploads_nothing(ready, output_container, tmp_path, make_pattern):
    client, (container, url) = ready, output_container
    secret = _secret(tmp_path)
    pattern = make_pattern(secret)
    client.create_task("job", shell_task("escape", "mkdir -p d; echo fine > ok.txt",
                                         output_files=[_output(pattern, url, "stolen")]))
    info = wait_task_completed(client, "job", "escape").execution_info
    assert _uploaded(container) == {}
    assert info.failure_info is not None and info.failure_info.code == "FileUploadMiscError", info
    details = {d.name: d.value for d in info.failure_info.details}
    assert details["FilePattern"] == pattern and "outside the task directory" in details["Message"]


@pytest.mark.parametrize("file_path", ["../../x", "/tmp/x", "a/../../x"])
def test_resource_file_path_outside_the_working_directory_is_refused_at_add(ready, file_path):
    client = ready
    with pytest.raises(HttpResponseError) as refused:
        client.create_task("job", shell_task("rf", "true", resource_files=[
            m.ResourceFile(http_url="http://127.0.0.1:9/x", file_path=file_path)]))
    assert refused.value.status_code == 400 and refused.value.error.code == "InvalidPropertyValue"


def test_resource_file_is_not_written_through_a_symlinked_directory_on_retry(ready, output_container,
                                                                              storage_connection_string, tmp_path):
    """Try 1 downloads sub/x.txt, then swaps sub for a link to a directory of the user's and fails; try 2's
    download of sub/x.txt must not land in that directory."""
    client, (container, _url) = ready, output_container
    container.upload_blob("x.txt", b"downloaded")
    svc = BlobServiceClient.from_connection_string(storage_connection_string)
    token = generate_container_sas(azurite.ACCOUNT_NAME, container.container_name, account_key=azurite.ACCOUNT_KEY,
                                   permission=ContainerSasPermissions(read=True),
                                   expiry=datetime.now(timezone.utc) + timedelta(hours=1))
    blob_url = f"{svc.url.rstrip('/')}/{container.container_name}/x.txt?{token}"
    victim_dir = tmp_path / "victim"
    victim_dir.mkdir()
    client.create_task("job", shell_task(
        "swap", f"test -f sub/x.txt || exit 0; rm -rf sub; ln -s {victim_dir} sub; exit 1",
        resource_files=[m.ResourceFile(http_url=blob_url, file_path="sub/x.txt")],
        constraints=m.BatchTaskConstraints(max_task_retry_count=1)))
    info = wait_task_completed(client, "job", "swap").execution_info
    assert list(victim_dir.iterdir()) == []
    assert info.retry_count == 1
    assert info.failure_info.code == "ResourceFileCreateFailed", info.failure_info
    assert "outside the task directory" in {d.name: d.value for d in info.failure_info.details}["Message"]


def test_stdout_is_not_written_through_a_link_left_by_a_previous_try(ready, tmp_path):
    """Try 1 replaces its ../stdout.txt with a link to a file of the user's; try 2 must not truncate it."""
    client = ready
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    client.create_task("job", shell_task(
        "stdout", "if [ -e again ]; then echo try 2; exit 1; fi; touch again; echo try 1; "
                  f"rm -f ../stdout.txt; ln -s {victim} ../stdout.txt; exit 1",
        constraints=m.BatchTaskConstraints(max_task_retry_count=1)))
    info = wait_task_completed(client, "job", "stdout").execution_info
    assert info.retry_count == 1 and info.exit_code == 1
    assert victim.read_text() == "precious\n"
    assert b"".join(client.download_task_file("job", "stdout", "stdout.txt")) == b"try 2\n"


def test_task_file_api_does_not_serve_or_delete_through_a_link(ready, tmp_path):
    client = ready
    secret = _secret(tmp_path)
    client.create_task("job", shell_task("files", f"ln -s {secret} leak.txt; ln -s {secret.parent} dir; echo ok"))
    wait_task_completed(client, "job", "files")
    for path in ("wd/leak.txt", "wd/dir/secret.txt"):
        with pytest.raises(HttpResponseError) as missing:
            b"".join(client.download_task_file("job", "files", path))
        assert missing.value.status_code == 404
        with pytest.raises(HttpResponseError) as not_deleted:
            client.delete_task_file("job", "files", path)
        assert not_deleted.value.status_code == 404
    names = {f.name for f in client.list_task_files("job", "files", recursive=True)}
    assert "wd/leak.txt" not in names and "wd/dir" not in names and "stdout.txt" in names
    assert secret.exists()


# --- 4. The key is not on the command line -------------------------------------------------------------------

def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _start_process(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    deadline, line = time.monotonic() + 30, ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        found = re.search(r"Batch emulator ready on (http://\S+)", line)
        if found:
            return proc, found.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"emulator did not start: {line}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _works_with_key(url: str, key: str) -> bool:
    return send(signed("GET", f"{url}/jobs?{API}", "devbatch", key)).status_code == 200


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_devstack_launch_keeps_the_key_off_the_command_line(tmp_path):
    """`./dev start`'s emulator: the key reaches it by environment; its argv (what `ps` shows) has none."""
    key = "c2VjcmV0LWtleS1mb3ItdGhpcy10ZXN0LW9ubHk="
    values = {"BATCH_ACCOUNT_URL": "http://127.0.0.1:10100", "BATCH_ACCOUNT_NAME": "devbatch",
              "BATCH_ACCOUNT_KEY": key}
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCH_EMULATOR_")}
    args, launch_env = devstack_stack.emulator_launch(values, {**env, "PYTHONPATH": str(ROOT)},
                                                      port=azurite.free_port(), data_dir=tmp_path / "state")
    assert key not in " ".join(args) and "--account-key" not in args
    proc, url = _start_process(args, launch_env)
    try:
        cmdline = _cmdline(proc.pid)
        assert "devstack.batch_emulator" in cmdline and key not in cmdline
        assert azurite.ACCOUNT_KEY not in cmdline  # nor the storage connection string's key
        assert _works_with_key(url, key) and not _works_with_key(url, DEFAULT_ACCOUNT_KEY)
    finally:
        _stop(proc)


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_account_key_file_must_be_private_and_stays_off_the_command_line(tmp_path):
    key = "YW5vdGhlci1zZWNyZXQta2V5LWZvci10aGUtdGVzdA=="
    key_file = tmp_path / "batch.key"
    key_file.write_text(key + "\n")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("BATCH_EMULATOR_")}, "PYTHONPATH": str(ROOT)}
    base = [sys.executable, "-m", "devstack.batch_emulator", "--port", "0", "--in-memory"]

    key_file.chmod(0o644)
    shared = subprocess.run([*base, "--account-key-file", str(key_file)], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=30)
    assert shared.returncode == 2 and "chmod 600" in shared.stderr

    on_argv = subprocess.run([*base, "--account-key", key], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=30)
    assert on_argv.returncode == 2 and "BATCH_EMULATOR_ACCOUNT_KEY" in on_argv.stderr
    assert key not in on_argv.stderr

    key_file.chmod(0o600)
    proc, url = _start_process([*base, "--account-key-file", str(key_file)], env)
    try:
        assert key not in _cmdline(proc.pid)
        assert _works_with_key(url, key)
    finally:
        _stop(proc)


def test_account_key_settings(tmp_path):
    from devstack.batch_emulator.config import ConfigError, from_args, from_env

    key_file = tmp_path / "k"
    key_file.write_text("a2V5LWZyb20tZmlsZQ==\n")
    key_file.chmod(0o600)
    assert from_env({"BATCH_EMULATOR_ACCOUNT_KEY": "a2V5LWZyb20tZW52"}).account_key == "a2V5LWZyb20tZW52"
    assert from_env({"BATCH_EMULATOR_ACCOUNT_KEY_FILE": str(key_file)}).account_key == "a2V5LWZyb20tZmlsZQ=="
    assert from_args(["--account-key-file", str(key_file)], environ={}).account_key == "a2V5LWZyb20tZmlsZQ=="
    with pytest.raises(ConfigError, match="not both"):
        from_env({"BATCH_EMULATOR_ACCOUNT_KEY": "a2V5", "BATCH_EMULATOR_ACCOUNT_KEY_FILE": str(key_file)})
    with pytest.raises(ConfigError, match="command line"):
        from_args(["--account-key", "a2V5"], environ={})
    key_file.chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        from_args(["--account-key-file", str(key_file)], environ={})


def test_output_matching_is_confined_to_the_task_directory(tmp_path):
    """Pattern matching alone (no storage): what stays inside matches, what leads outside is refused."""
    from devstack.batch_emulator.executor import find_output_files

    secret = _secret(tmp_path)
    task = tmp_path / "node" / "task"
    wd = task / "wd"
    (wd / "sub").mkdir(parents=True)
    (task / "stdout.txt").write_text("o")
    (task / "stderr.txt").write_text("e")
    (wd / "a.txt").write_text("a")
    (wd / "sub" / "b.txt").write_text("b")
    (wd / "inside.txt").symlink_to(wd / "a.txt")
    (wd / "leak.txt").symlink_to(secret)
    (wd / "outdir").symlink_to(secret.parent)
    (wd / "loop").symlink_to(wd)  # a loop `**` must not follow (it used to, once per level)

    def found(pattern, env=None):
        result = find_output_files(pattern, wd, env or {})
        return sorted(name for _, name in result.files), result.refused

    assert found("../std*.txt") == (["stderr.txt", "stdout.txt"], [])
    assert found("$AZ_BATCH_TASK_DIR/stderr.txt", {"AZ_BATCH_TASK_DIR": str(task)}) == (["stderr.txt"], [])
    assert found(str(wd / "a.txt")) == (["a.txt"], [])
    assert found("inside.txt") == (["inside.txt"], [])
    files, refused = found("**/*.txt")
    assert files == ["a.txt", "inside.txt", "sub/b.txt"] and len(refused) == 1 and "leak.txt" in refused[0]
    for pattern in ("leak.txt", "outdir/secret.txt", "outdir/*.txt", str(secret), str(secret.parent) + "/*",
                    "../../" + "../" * 30 + str(secret).lstrip("/"), "sub/*/../../../../*"):
        assert found(pattern)[0] == [] and found(pattern)[1], pattern
    assert all(path.resolve().is_relative_to(task) for path, _ in find_output_files("**/*", wd, {}).files)
