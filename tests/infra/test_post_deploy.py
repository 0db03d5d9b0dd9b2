"""infra/scripts/post-deploy.sh against fake `az`/`azd` (tests/infra/hook_fakes.py), on a PATH without Python.

What issue 17 asks of it: every az call pinned to azd's subscription while az's default is another one;
the Event Grid subscription create retried with backoff while a cold app misses the webhook handshake,
saying what it waits for; a second run changes nothing; the key never on a command line or in the output."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.infra.hook_fakes import AZD_SUBSCRIPTION, KEY, REPO, Fakes, Run

SCRIPTS = REPO / "infra" / "scripts"


@pytest.fixture
def fakes(tmp_path: Path) -> Fakes:
    return Fakes(tmp_path)


def _option(call: list[str], name: str) -> str:
    return call[call.index(name) + 1]


def assert_pinned_and_keyless(run: Run) -> None:
    for call in run.calls:
        if call[0] != "az":
            continue
        if call[1] == "rest":
            assert f"/subscriptions/{AZD_SUBSCRIPTION}/" in _option(call, "--url"), call
        else:
            assert _option(call, "--subscription") == AZD_SUBSCRIPTION, call
    # The key travels in files only: never on any command line (`ps` shows those), never printed.
    assert not [c for c in run.calls if any(KEY in a for a in c)]
    assert KEY not in run.output


def test_creates_the_subscription_pinned_to_azds_subscription(fakes: Fakes):
    run = fakes.run("post-deploy.sh")
    assert run.result.returncode == 0, run.output
    assert_pinned_and_keyless(run)
    assert not run.az("account", "show")  # az's default subscription is never consulted
    assert [c for c in run.calls if c[0] == "azd"] == [["azd", "env", "get-values"]]  # asked once
    (put,) = [c for c in run.az("rest") if c[3] == "put"]
    assert _option(put, "--url") == (
        f"/subscriptions/{AZD_SUBSCRIPTION}/resourceGroups/rg-test/providers/Microsoft.EventGrid/systemTopics/"
        "evgt-abc/eventSubscriptions/input-blob-created?api-version=2022-06-15")
    body = json.loads((fakes.root / "eventgrid-body.json").read_text())["properties"]
    assert body["filter"] == {"includedEventTypes": ["Microsoft.Storage.BlobCreated"],
                              "subjectBeginsWith": "/blobServices/default/containers/input/"}
    assert body["destination"]["endpointType"] == "WebHook"
    assert body["eventDeliverySchema"] == "EventGridSchema"
    assert body["destination"]["properties"]["endpointUrl"] == (
        "https://func-abc.azurewebsites.net/runtime/webhooks/blobs?"
        f"functionName=Host.Functions.process_upload&code={KEY}")


def test_a_hook_that_forgets_the_subscription_fails_against_the_fake(fakes: Fakes, tmp_path: Path):
    # The pinning check can fail: with --subscription dropped, az talks to its default subscription.
    unpinned = tmp_path / "copy" / "infra" / "scripts"
    shutil.copytree(SCRIPTS, unpinned)
    common = unpinned / "common.sh"
    common.write_text(common.read_text().replace('azs() { az "$@" --subscription "$AZURE_SUBSCRIPTION_ID"; }',
                                                 'azs() { az "$@"; }'))
    run = fakes.run("post-deploy.sh", scripts=unpinned)
    assert run.result.returncode != 0
    assert "ResourceGroupNotFound" in run.result.stderr and "blobs_extension" in run.result.stderr


def test_cold_webhook_is_retried_with_backoff_saying_what_it_waits_for(fakes: Fakes):
    run = fakes.run("post-deploy.sh", FAKE_PUT_FAILS="2", POST_DEPLOY_BACKOFF_SECONDS="0")
    assert run.result.returncode == 0, run.output
    assert len([c for c in run.az("rest") if c[3] == "put"]) == 3
    waits = [line for line in run.result.stdout.splitlines() if "validation handshake" in line]
    assert len(waits) == 2 and "try 1/6" in waits[0] and "try 2/6" in waits[1]
    # Event Grid's error quotes the endpoint with its key: scrubbed wherever it is shown
    assert_pinned_and_keyless(run)


def test_a_handshake_failing_after_the_put_is_waited_for_and_retried(fakes: Fakes):
    # Event Grid answers the PUT ("Creating") and fails the handshake while provisioning
    run = fakes.run("post-deploy.sh", FAKE_ASYNC_FAILS="2")
    assert run.result.returncode == 0, run.output
    assert len([c for c in run.az("rest") if c[3] == "put"]) == 3
    assert len([line for line in run.result.stdout.splitlines() if "validation handshake" in line]) == 2
    assert (fakes.root / "eg-state.txt").read_text().startswith("Succeeded|")
    assert_pinned_and_keyless(run)
    # a subscription left Failed by an earlier run is not mistaken for one in place
    (fakes.root / "put_calls").unlink()
    (fakes.root / "eg-state.txt").write_text((fakes.root / "eg-state.txt").read_text().replace("Succeeded", "Failed"))
    again = fakes.run("post-deploy.sh")
    assert again.result.returncode == 0 and len([c for c in again.az("rest") if c[3] == "put"]) == 1


def test_backoff_doubles_up_to_its_cap_then_gives_up_clearly(fakes: Fakes):
    run = fakes.run("post-deploy.sh", FAKE_PUT_FAILS="99", POST_DEPLOY_CREATE_TRIES="4",
                    POST_DEPLOY_BACKOFF_SECONDS="0")
    assert run.result.returncode != 0
    assert len([c for c in run.az("rest") if c[3] == "put"]) == 4
    assert "could not validate the webhook after 4 tries" in run.result.stderr
    assert "code=***" in run.result.stderr  # az's message is shown, its key masked
    assert_pinned_and_keyless(run)
    # the pauses themselves: 15, 30, 60 s with the defaults (read from the messages, not slept here)
    script = (SCRIPTS / "post-deploy.sh").read_text()
    assert "pause=$((pause * 2))" in script and "backoff=${POST_DEPLOY_BACKOFF_SECONDS:-15}" in script


def test_a_refusal_that_time_cannot_fix_fails_at_once(fakes: Fakes, tmp_path: Path):
    az = fakes.bin / "az"
    az.write_text(az.read_text().replace("(Url validation) Webhook validation handshake failed for $url.",
                                         "(AuthorizationFailed) The client does not have authorization"))
    run = fakes.run("post-deploy.sh", FAKE_PUT_FAILS="1")
    assert run.result.returncode != 0
    assert len([c for c in run.az("rest") if c[3] == "put"]) == 1
    assert "AuthorizationFailed" in run.result.stderr


def test_second_run_changes_nothing_and_fails_nowhere(fakes: Fakes):
    first = fakes.run("post-deploy.sh")
    assert first.result.returncode == 0, first.output
    second = fakes.run("post-deploy.sh")
    assert second.result.returncode == 0, second.output
    assert not [c for c in second.az("rest") if c[3] in ("put", "patch", "delete")]
    assert "nothing to change" in second.result.stdout
    assert_pinned_and_keyless(second)


def test_a_rotated_key_is_put_again(fakes: Fakes):
    assert fakes.run("post-deploy.sh").result.returncode == 0
    run = fakes.run("post-deploy.sh", FAKE_KEY="a-new-key-after-rotation")
    assert run.result.returncode == 0, run.output
    assert len([c for c in run.az("rest") if c[3] == "put"]) == 1
    body = json.loads((fakes.root / "eventgrid-body.json").read_text())["properties"]
    assert body["destination"]["properties"]["endpointUrl"].endswith("code=a-new-key-after-rotation")


def test_waits_for_the_key_and_gives_up_clearly(fakes: Fakes):
    run = fakes.run("post-deploy.sh", FAKE_KEY_AFTER="3")
    assert run.result.returncode == 0, run.output
    assert len(run.az("functionapp", "keys")) == 3
    assert "waiting for the function host to publish its blobs_extension key" in run.result.stdout
    (fakes.root / "key_calls").unlink()
    (fakes.root / "eg-state.txt").unlink()
    run = fakes.run("post-deploy.sh", FAKE_KEY_AFTER="99")
    assert run.result.returncode != 0
    assert "blobs_extension" in run.result.stderr
    assert not [c for c in run.calls if any("eventSubscriptions" in a for a in c)]


def test_no_python_on_the_path_and_none_in_the_hooks(fakes: Fakes):
    assert shutil.which("python3", path=fakes.path) is None and shutil.which("python", path=fakes.path) is None
    assert shutil.which("jq", path=fakes.path) is None
    for script in SCRIPTS.glob("*.sh"):
        text = script.read_text()
        assert "python" not in text.lower().replace("no python", ""), script.name
        assert "jq " not in text, script.name
