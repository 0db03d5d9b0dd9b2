"""devstack.compat's own parts (results, venv cache, client registry) and its two install-free clients (raw
REST with httpx, curl + openssl) against a real emulator - fast enough for the normal suite."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from devstack.compat import clients as compat_clients
from devstack.compat.clients import RunContext, by_key, run_script_client
from devstack.compat.rest_scenario import run_rest
from devstack.compat.results import ClientResult, Step, parse_steps
from devstack.compat.venvs import READY_MARKER, VenvError, ensure_venv, venv_dir


def test_parse_steps_reads_marked_lines_only():
    output = "\n".join([
        "noise",
        'COMPAT-STEP {"step": "pool.add", "ok": true, "seconds": 0.5, "detail": ""}',
        'COMPAT-STEP {"step": "task.add", "ok": false, "seconds": 0.1, "detail": "BatchErrorException TaskExists"}',
        "COMPAT-STEP {not json",
        'Traceback ... COMPAT-STEP {"step": "x", "ok": true}',
    ])
    assert parse_steps(output) == [Step("pool.add", True, 0.5, ""),
                                   Step("task.add", False, 0.1, "BatchErrorException TaskExists")]


def test_a_client_passes_only_with_steps_all_ok():
    result = ClientResult("k", "client", "1")
    assert not result.ok  # no steps: nothing was shown to work
    result.steps = [Step("a", True), Step("b", False, detail="boom")]
    assert not result.ok and result.verdict == "FAIL (1/2 steps)" and result.failures() == [result.steps[1]]
    result.steps = [Step("a", True)]
    assert result.ok and result.verdict == "pass"
    result.setup_error = "pip failed"
    assert not result.ok and result.verdict == "not run"


def test_venv_dir_depends_on_the_requirements_not_their_order(tmp_path):
    a = venv_dir(tmp_path, "sdk", ["azure-batch==14.2.0", "x==1"])
    assert a == venv_dir(tmp_path, "sdk", ["x==1", "azure-batch==14.2.0"])
    assert a != venv_dir(tmp_path, "sdk", ["azure-batch==13.0.0", "x==1"])


def test_a_complete_venv_is_reused_and_an_incomplete_one_rebuilt(tmp_path):
    requirements = ["azure-batch==14.2.0"]
    target = venv_dir(tmp_path, "sdk", requirements)
    (target / "bin").mkdir(parents=True)
    (target / "bin" / "python").write_text("")
    (target / READY_MARKER).write_text("\n".join(requirements))
    assert ensure_venv(tmp_path, "sdk", requirements, base_python="/bin/false") == target / "bin" / "python"
    (target / READY_MARKER).unlink()  # as after an interrupted install
    with pytest.raises(VenvError, match="create venv for sdk"):
        ensure_venv(tmp_path, "sdk", requirements, base_python="/bin/false")
    assert not target.exists()


def test_client_registry():
    keys = [c.key for c in compat_clients.CLIENTS]
    assert len(keys) == len(set(keys))
    assert {"rest", "curl", "azcli", "sdk-14.2.0", "tutorial-4.1.3"} <= set(keys)
    for spec in compat_clients.CLIENTS:
        if spec.scenario:
            assert (compat_clients.SCENARIOS / spec.scenario).exists(), spec.key
    assert [c.key for c in by_key(["curl", "rest"])] == ["curl", "rest"]
    with pytest.raises(KeyError, match="nope"):
        by_key(["nope"])


def test_raw_rest_client_passes(batch_emulator_module):
    emu = batch_emulator_module
    result = run_rest(emu.url, emu.account_name, emu.account_key, "restrun")
    assert result.ok, [(s.name, s.detail) for s in result.failures()]
    assert len(result.steps) >= 15


@pytest.mark.skipif(any(shutil.which(t) is None for t in ("bash", "curl", "openssl", "awk")),
                    reason="needs bash, curl, openssl and awk")
def test_curl_client_passes(batch_emulator_module, tmp_path):
    emu = batch_emulator_module
    env = {"COMPAT_BATCH_URL": emu.url, "COMPAT_BATCH_ACCOUNT": emu.account_name, "COMPAT_BATCH_KEY": emu.account_key}
    ctx = RunContext(env=env, work=tmp_path, venv_cache=tmp_path / "venvs")
    result = run_script_client(by_key(["curl"])[0], ctx)
    assert result.ok, [(s.name, s.detail) for s in result.failures()] or (tmp_path / "curl.log").read_text()
    assert [s.name for s in result.steps][-1] == "curl DELETE /pools/{id} (no Content-Length)"


def test_a_scenario_that_dies_outside_a_step_is_a_failure(tmp_path, monkeypatch):
    script = tmp_path / "dies.sh"
    script.write_text('echo \'COMPAT-STEP {"step": "first", "ok": true, "seconds": 0}\'\necho boom >&2\nexit 3\n')
    monkeypatch.setattr(compat_clients, "SCENARIOS", tmp_path)
    spec = compat_clients.ClientSpec("dies", "dying client", "0", "shell", scenario="dies.sh")
    result = run_script_client(spec, RunContext(env={}, work=tmp_path, venv_cache=Path(tmp_path)))
    assert not result.ok
    assert result.steps[-1] == Step("scenario process", False, 0.0, "boom")
