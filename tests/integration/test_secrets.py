"""No secret leaves where it is needed: after a local run with good and failing uploads, no account key, SAS
signature, connection string or token appears in the app's log lines, in any ledger or status row, in the
operator CLI's output (tables and JSON), or in any task property except the storage URLs a node needs."""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from devstack import media
from devstack.azurite import ACCOUNT_KEY
from ops import commands as status_cli
from shared.log import LOGGER_NAME
from tests.integration.test_timer import make_stack

pytestmark = pytest.mark.integration

SAMPLE = json.loads((Path(__file__).resolve().parents[2] / "local.settings.sample.json").read_text())["Values"]
# What a SAS or a key looks like wherever it shows up: a signature, a key in a connection string, a token.
SECRET_PATTERNS = [re.compile(p) for p in (r"\bsig=[A-Za-z0-9%+/=]{10,}", r"AccountKey=[A-Za-z0-9+/=]{10,}",
                                              r"SharedAccessSignature=", r"\bBearer\s+[A-Za-z0-9._-]{20,}")]


def leaks(text: str, keys: list[str]) -> list[str]:
    found = [p.pattern for p in SECRET_PATTERNS if p.search(text)]
    found += [f"key {k[:6]}…" for k in keys if k and k in text]
    return found


@pytest.fixture
def stack(storage_connection_string, batch_emulator_factory):
    emulator = batch_emulator_factory(node_start_delay=0.2)
    s = make_stack(storage_connection_string, emulator)
    yield s
    s.service.clients.batch.close()
    s.batch.close()


def test_a_run_with_good_and_failing_uploads_leaks_no_secret(stack, tmp_path, caplog, capsys):
    keys = [ACCOUNT_KEY, stack.settings.batch_account_key or ""]
    good = media.make_clip(tmp_path / "good.mp4", seconds=1.0, video=False).read_bytes()
    silent = media.make_clip(tmp_path / "silent.mp4", seconds=1.0, audio_streams=0).read_bytes()
    names = {"ok/a b.mp4": good, "no audio.mp4": silent, "corrupt.mp4": b"not an mp4 at all" * 100,
             "empty.mp4": b"", "notes.txt": b"hello"}
    with caplog.at_level(logging.DEBUG, logger=LOGGER_NAME):
        for name, data in names.items():
            stack.upload(name, data)
            stack.trigger(name)
        stack.tick_until(lambda: all(r["State"] not in ("queued", "running") for r in stack.table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": stack.settings.job_id})) and len(list(stack.table.query_entities(
                "PartitionKey eq @pk", parameters={"pk": stack.settings.job_id}))) == len(names), 120, "all final")
    log_text = "\n".join(r.getMessage() + " " + json.dumps({k: str(v) for k, v in r.__dict__.items()
                                                              if k.startswith("ctx_")}) for r in caplog.records)
    assert caplog.records and leaks(log_text, keys) == []

    rows = list(stack.table.query_entities("PartitionKey ge ''"))  # every partition: files, status, watermark
    states = {r.get("State") for r in rows}
    assert {"succeeded", "failed", "rejected", "skipped"} <= states, states
    assert leaks(json.dumps([{k: str(v) for k, v in r.items()} for r in rows]), keys) == []

    settings_file = tmp_path / "local.settings.json"
    values = {**SAMPLE, "MEDIA_STORAGE": stack.connection_string, "BATCH_ACCOUNT_URL": stack.emulator.url,
              "BATCH_ACCOUNT_NAME": stack.emulator.account_name, "BATCH_ACCOUNT_KEY": stack.emulator.account_key,
              "INPUT_CONTAINER": stack.settings.input_container, "OUTPUT_CONTAINER": stack.settings.output_container,
              "LOGS_CONTAINER": stack.settings.logs_container, "LEDGER_TABLE": stack.settings.ledger_table,
              "BATCH_POOL_ID": stack.settings.pool_id, "BATCH_JOB_ID": stack.settings.job_id}
    settings_file.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    capsys.readouterr()
    for argv in (["files"], ["failures"], ["pool"], ["files", "--json"], ["failures", "--json"], ["pool", "--json"]):
        status_cli.main([*argv, "--settings", str(settings_file)])
        out = capsys.readouterr()
        assert leaks(out.out + out.err, keys) == [], argv

    # Tasks: a SAS only where a node needs one - the input URL and the output/logs container URLs.
    for task in (t for job in stack.service.batch.our_jobs() for t in stack.batch.list_tasks(job.job_id)):
        doc = task.as_dict()
        needed = [f.get("httpUrl", "") for f in doc.get("resourceFiles", [])]
        needed += [o["destination"]["container"]["containerUrl"] for o in doc.get("outputFiles", [])]
        assert needed and all("sig=" in url for url in needed)
        rest = json.dumps({k: v for k, v in doc.items() if k not in ("resourceFiles", "outputFiles")})
        outputs = json.dumps([{**o, "destination": {"container": {k: v for k, v in o["destination"]["container"].items()
                                                               if k != "containerUrl"}}}
                              for o in doc.get("outputFiles", [])])
        assert leaks(rest + outputs, keys) == [], task.id
