"""function_app.py: one blob trigger, SDK-type BlobClient argument, source chosen by setting."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, typing, function_app
import azurefunctions.extensions.bindings.blob as blob
fns = function_app.app.get_functions()
upload = next(f for f in fns if f.get_function_name() == "process_upload")
hints = typing.get_type_hints(upload.get_user_function())
print(json.dumps({"functions": [json.loads(f.get_function_json()) for f in fns],
                  "names": [f.get_function_name() for f in fns],
                  "sdk_type": hints["client"] is blob.BlobClient}))
"""


def index(**env: str) -> dict:
    """Index the app in a fresh interpreter, as the worker does at start-up."""
    clean = {k: v for k, v in os.environ.items() if k != "BLOB_TRIGGER_SOURCE"}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env={**clean, **env},
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("setting,source", [(None, "LogsAndContainerScan"), ("eventgrid", "EventGrid")])
def test_blob_trigger_binding(setting, source):
    app = index(**({"BLOB_TRIGGER_SOURCE": setting} if setting else {}))
    blob_fn = app["functions"][app["names"].index("process_upload")]
    trigger = next(b for b in blob_fn["bindings"] if b["type"] == "blobTrigger")
    assert trigger == {"direction": "IN", "type": "blobTrigger", "name": "client",
                       "path": "%INPUT_CONTAINER%/{name}", "connection": "MEDIA_STORAGE", "source": source}
    assert app["sdk_type"] is True   # the worker hands a BlobClient: no bytes are read into memory


def test_bad_source_setting_fails_indexing_with_its_name():
    result = subprocess.run([sys.executable, "-c", "import function_app"], cwd=ROOT,
                            env={**os.environ, "BLOB_TRIGGER_SOURCE": "webhook"}, capture_output=True, text=True)
    assert result.returncode != 0 and "BLOB_TRIGGER_SOURCE" in result.stderr
