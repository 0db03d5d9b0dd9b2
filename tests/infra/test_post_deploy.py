"""infra/scripts/post-deploy.sh against fake `az` and `azd`: the calls it makes, and no key leaks.

The fakes are small shell scripts on PATH that log their argv (one call per line, arguments
tab-separated) and answer the few queries the hook makes."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from infra.batch_pool import arm_pool_body, identity_patch, settings_from_app_settings
from tests.infra.test_app_settings import PUBLIC_OUTPUTS, template_settings

REPO = Path(__file__).resolve().parents[2]
HOOK = REPO / "infra" / "scripts" / "post-deploy.sh"
KEY = "s3cr3t-blobs-extension-key"
POOL_IDENTITY = PUBLIC_OUTPUTS["poolIdentity"]["id"]

FAKE_AZ = r"""#!/bin/sh
log="$FAKE_LOG"
printf '%s' "az" >>"$log"; for a in "$@"; do printf '\t%s' "$a" >>"$log"; done; echo >>"$log"
case "$1 $2" in
  "account show") echo "00000000-0000-0000-0000-0000000000aa" ;;
  "functionapp keys")
     n=$(cat "$FAKE_DIR/key_calls" 2>/dev/null || echo 0); n=$((n+1)); echo "$n" >"$FAKE_DIR/key_calls"
     if [ "$n" -ge "${FAKE_KEY_AFTER:-1}" ]; then echo "$FAKE_KEY"; fi ;;
  "functionapp config") cat "$FAKE_DIR/appsettings.json" ;;
  "rest --method")
     case "$3" in
       get) if [ "$FAKE_POOL" = missing ]; then echo "ERROR: (PoolNotFound) Not Found" >&2; exit 1; fi
            if [ "$FAKE_POOL" = broken ]; then echo "ERROR: (AuthorizationFailed) denied" >&2; exit 1; fi
            cat "$FAKE_DIR/pool.json" ;;
       put|patch) kind=$3; case "$*" in *eventSubscriptions*) kind=eventgrid ;; esac
            for a in "$@"; do case "$a" in @*) cp "${a#@}" "$FAKE_DIR/$kind-body.json" ;; esac; done ;;
     esac ;;
esac
exit 0
"""
FAKE_AZD = r"""#!/bin/sh
printf '%s' "azd" >>"$FAKE_LOG"; for a in "$@"; do printf '\t%s' "$a" >>"$FAKE_LOG"; done; echo >>"$FAKE_LOG"
cat "$FAKE_DIR/azd-values.env"
"""


@pytest.fixture
def fakes(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("az", FAKE_AZ), ("azd", FAKE_AZD)):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    settings = template_settings()
    (tmp_path / "appsettings.json").write_text(json.dumps([{"name": k, "value": v} for k, v in settings.items()]))
    (tmp_path / "pool.json").write_text(json.dumps({"name": "ffmpeg-pool", "identity": None}))
    values = {
        "AZURE_RESOURCE_GROUP": "rg-test", "AZURE_FUNCTION_APP_NAME": "func-abc",
        "AZURE_FUNCTION_APP_HOSTNAME": "func-abc.azurewebsites.net", "AZURE_BATCH_ACCOUNT_NAME": "baabc",
        "BATCH_POOL_ID": "ffmpeg-pool", "POOL_IDENTITY_RESOURCE_ID": POOL_IDENTITY,
        "EVENTGRID_SYSTEM_TOPIC_NAME": "evgt-abc", "INPUT_CONTAINER": "input",
        "BLOB_TRIGGER_FUNCTION_NAME": "process_upload",
    }
    (tmp_path / "azd-values.env").write_text("".join(f'{k}="{v}"\n' for k, v in values.items()))
    return tmp_path


def run_hook(fakes: Path, **env: str) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    full_env = {
        "PATH": f"{fakes / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "FAKE_LOG": str(fakes / "calls.log"), "FAKE_DIR": str(fakes), "FAKE_KEY": KEY,
        "FAKE_POOL": "missing", "POST_DEPLOY_RETRY_SECONDS": "0", "POST_DEPLOY_RETRIES": "3",
        "HOME": str(fakes),
        **env,
    }
    (fakes / "calls.log").unlink(missing_ok=True)
    result = subprocess.run(["sh", str(HOOK)], cwd=fakes, env=full_env, capture_output=True, text=True, timeout=60)
    log = (fakes / "calls.log").read_text() if (fakes / "calls.log").exists() else ""
    return result, [line.split("\t") for line in log.splitlines()]


def _call(calls: list[list[str]], *prefix: str) -> list[str]:
    found = [c for c in calls if c[: len(prefix)] == list(prefix)]
    assert len(found) == 1, (prefix, calls)
    return found[0]


def _option(call: list[str], name: str) -> str:
    return call[call.index(name) + 1]


def test_missing_pool_is_created_with_identity_then_event_grid_is_subscribed(fakes: Path):
    result, calls = run_hook(fakes)
    assert result.returncode == 0, result.stderr
    put = json.loads((fakes / "put-body.json").read_text())
    expected = arm_pool_body(settings_from_app_settings(
        json.loads((fakes / "appsettings.json").read_text())), POOL_IDENTITY)
    assert put == expected
    assert put["identity"]["userAssignedIdentities"] == {POOL_IDENTITY: {}}
    put_call = [c for c in calls if c[:4] == ["az", "rest", "--method", "put"] and "/pools/" in _option(c, "--url")]
    assert len(put_call) == 1
    put_call = put_call[0]
    assert _option(put_call, "--url").startswith(
        "/subscriptions/00000000-0000-0000-0000-0000000000aa/resourceGroups/rg-test/providers/"
        "Microsoft.Batch/batchAccounts/baabc/pools/ffmpeg-pool?api-version=")

    sub = [c for c in calls if c[:4] == ["az", "rest", "--method", "put"] and "eventSubscriptions" in _option(c, "--url")]
    assert len(sub) == 1
    sub = sub[0]
    assert _option(sub, "--url") == (
        "/subscriptions/00000000-0000-0000-0000-0000000000aa/resourceGroups/rg-test/providers/"
        "Microsoft.EventGrid/systemTopics/evgt-abc/eventSubscriptions/input-blob-created?api-version=2022-06-15")
    body = json.loads((fakes / "eventgrid-body.json").read_text())["properties"]
    assert body["filter"] == {"includedEventTypes": ["Microsoft.Storage.BlobCreated"],
                              "subjectBeginsWith": "/blobServices/default/containers/input/"}
    assert body["destination"]["endpointType"] == "WebHook"
    assert body["eventDeliverySchema"] == "EventGridSchema"
    assert body["destination"]["properties"]["endpointUrl"] == (
        "https://func-abc.azurewebsites.net/runtime/webhooks/blobs?"
        f"functionName=Host.Functions.process_upload&code={KEY}")
    # pool first, so the first upload finds it with its identity
    assert calls.index(put_call) < calls.index(sub)
    # The key travels in the body file only: never on any command line (`ps` shows those).
    assert not [c for c in calls if any(KEY in a for a in c)]
    assert KEY not in result.stdout + result.stderr


def test_existing_pool_without_identity_gets_it_patched(fakes: Path):
    result, calls = run_hook(fakes, FAKE_POOL="exists")
    assert result.returncode == 0, result.stderr
    assert json.loads((fakes / "patch-body.json").read_text()) == identity_patch(POOL_IDENTITY)
    assert not [c for c in calls if c[:4] == ["az", "rest", "--method", "put"] and "/pools/" in _option(c, "--url")]


def test_pool_already_carrying_the_identity_is_left_alone(fakes: Path):
    (fakes / "pool.json").write_text(json.dumps({"identity": {"userAssignedIdentities": {POOL_IDENTITY: {}}}}))
    result, calls = run_hook(fakes, FAKE_POOL="exists")
    assert result.returncode == 0, result.stderr
    assert not [c for c in calls if c[:3] == ["az", "rest", "--method"] and c[3] in ("put", "patch")
                and "/pools/" in _option(c, "--url")]


def test_sas_mode_skips_the_pool(fakes: Path):
    # NODE_STORAGE_ACCESS=userDelegationSas: the template outputs an empty POOL_IDENTITY_RESOURCE_ID
    values = (fakes / "azd-values.env").read_text().replace(POOL_IDENTITY, "")
    (fakes / "azd-values.env").write_text(values)
    result, calls = run_hook(fakes, FAKE_POOL="broken")
    assert result.returncode == 0, result.stderr
    assert not [c for c in calls if c[:2] == ["az", "rest"] and "/pools/" in _option(c, "--url")]


def test_unreadable_pool_fails_the_hook_before_touching_event_grid(fakes: Path):
    result, calls = run_hook(fakes, FAKE_POOL="broken")
    assert result.returncode != 0
    assert "AuthorizationFailed" in result.stderr
    assert not [c for c in calls if any("eventSubscriptions" in a for a in c)]


def test_waits_for_the_key_and_gives_up_clearly(fakes: Path):
    result, calls = run_hook(fakes, FAKE_KEY_AFTER="3")
    assert result.returncode == 0, result.stderr
    assert len([c for c in calls if c[:3] == ["az", "functionapp", "keys"]]) == 3
    (fakes / "key_calls").unlink()
    result, calls = run_hook(fakes, FAKE_KEY_AFTER="99")
    assert result.returncode != 0
    assert "blobs_extension" in result.stderr
    assert not [c for c in calls if any("eventSubscriptions" in a for a in c)]


def test_arm_pool_body_carries_the_apps_pool_unchanged():
    settings = settings_from_app_settings([{"name": k, "value": v} for k, v in template_settings().items()])
    body = arm_pool_body(settings, POOL_IDENTITY)
    props = body["properties"]
    from shared.pool_spec import build_pool
    pool = build_pool(settings)
    assert props["vmSize"] == pool.vm_size
    assert props["scaleSettings"]["autoScale"]["formula"] == pool.auto_scale_formula
    assert props["startTask"]["commandLine"] == pool.start_task.command_line
    assert props["startTask"]["userIdentity"]["autoUser"] == {"scope": "Pool", "elevationLevel": "Admin"}
    assert props["taskSchedulingPolicy"] == {"nodeFillType": "Pack"}
    assert props["deploymentConfiguration"]["virtualMachineConfiguration"]["nodeAgentSkuId"] == pool.virtual_machine_configuration.node_agent_sku_id
    with pytest.raises(ValueError):
        identity_patch("not-a-resource-id")
