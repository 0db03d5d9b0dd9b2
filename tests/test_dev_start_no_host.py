"""`./dev start --no-host`: Azurite and the Batch emulator without the dev host, for `func start` (issue 16)."""
from __future__ import annotations

from devstack import cli, stack


def _fake_start(calls):
    def start(with_host: bool = True, **_other):
        calls.append(with_host)
        parts = [stack.Component("azurite", 1, 10002, "a.log"), stack.Component("batch-emulator", 2, 10100, "b.log")]
        return parts + ([stack.Component("devhost", 3, 7071, "d.log")] if with_host else [])
    return start


def test_no_host_starts_storage_and_batch_only_and_says_how_to_run_the_app(monkeypatch, capsys):
    calls: list[bool] = []
    monkeypatch.setattr(stack, "start", _fake_start(calls))
    monkeypatch.setattr(stack, "running", lambda: [])
    assert cli.cmd_start(["--no-host"]) == 0
    out = capsys.readouterr().out
    assert calls == [False]
    assert "azurite" in out and "batch-emulator" in out and "devhost" not in out
    assert "func start" in out and "blobs_extension key" not in out


def test_no_host_refuses_while_the_dev_host_runs(monkeypatch, capsys):
    calls: list[bool] = []
    monkeypatch.setattr(stack, "start", _fake_start(calls))
    monkeypatch.setattr(stack, "running", lambda: [stack.Component("devhost", 3, 7071, "d.log")])
    assert cli.cmd_start(["--no-host"]) == 1
    assert calls == [] and "./dev stop" in capsys.readouterr().err
