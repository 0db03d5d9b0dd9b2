"""Blob trigger, polling source, against real Azurite: receipts, re-fires, poison, shutdown."""
from __future__ import annotations

import base64
import json
import threading

import pytest

from .toyapp import wait_for

pytestmark = pytest.mark.integration

RECEIPTS = "azure-webjobs-hosts"


def upload(blob_service, container: str, name: str, data: bytes = b"payload", **kwargs):
    client = blob_service.get_container_client(container)
    if not client.exists():
        client.create_container()
    client.upload_blob(name, data, overwrite=True, **kwargs)
    return client.get_blob_client(name).get_blob_properties().etag


def receipt_metadata(blob_service, app, function: str, etag: str, container: str, name: str) -> dict | None:
    blob = blob_service.get_blob_client(
        RECEIPTS, f"blobreceipts/{app.host_id}/Host.Functions.{function}/{etag}/{container}/{name}")
    return blob.get_blob_properties().metadata if blob.exists() else None


def poison_messages(queue_service, container: str, encoded: bool = True) -> list[dict]:
    """This container's poison messages, decoded the way `encoded` says they were written.

    The poison queue is shared by every test on the session's Azurite, so messages
    are told apart by ContainerName (unique per toy app); peek sees the first 32.
    """
    if not any(q.name == "webjobs-blobtrigger-poison" for q in queue_service.list_queues()):
        return []
    queue = queue_service.get_queue_client("webjobs-blobtrigger-poison")
    rows = []
    for message in queue.peek_messages(max_messages=32):
        try:
            body = json.loads(base64.b64decode(message.content, validate=True).decode() if encoded
                              else message.content)
        except ValueError:
            continue  # another test's message in the other encoding
        if isinstance(body, dict) and body.get("ContainerName") == container:
            rows.append(body)
    return rows


def test_each_blob_fires_once_and_receipts_survive_restart(toy_app, blob_service):
    names = ["a.bin", "folder/with space/ünï.bin"]
    etags = {name: upload(blob_service, toy_app.input_container, name, metadata={"k": "v"}) for name in names}
    host = toy_app.host()
    host.wait_idle()
    calls = toy_app.calls("blob")
    assert sorted(c["name"] for c in calls) == sorted(f"{toy_app.input_container}/{n}" for n in names)
    for name, etag in etags.items():
        # Receipt at the host's layout, complete (no Incomplete metadata).
        assert receipt_metadata(blob_service, toy_app, "on_blob", etag, toy_app.input_container, name) == {}
    host.stop()

    second = toy_app.host()
    second.wait_idle()
    assert len(toy_app.calls("blob")) == 2, "a restart must not re-fire finished blobs"
    second.stop()
    host.start().wait_idle()   # the same DevHost object can be started again
    assert len(toy_app.calls("blob")) == 2
    assert len(host.blob_functions) == 3


def test_function_sees_metadata_but_cannot_read_bytes(toy_app, blob_service):
    etag = upload(blob_service, toy_app.input_container, "clip.bin", b"x" * 1234, metadata={"origin": "test"})
    toy_app.host().wait_idle()
    [call] = toy_app.calls("blob")
    assert call["name"] == f"{toy_app.input_container}/clip.bin"   # trigger metadata BlobTrigger: container/name
    assert call["length"] == 1234
    assert call["etag"] == etag
    assert call["metadata"] == {"origin": "test"}
    assert call["uri"].endswith(f"/{toy_app.input_container}/clip.bin")
    assert call["read_error"] == "BlobContentNotLoadedError"


def test_download_mode_gives_the_bytes(toy_app, blob_service):
    upload(blob_service, toy_app.input_container, "clip.bin", b"hello")
    toy_app.host(download_blob_content=True).wait_idle()
    [call] = toy_app.calls("blob")
    assert call["read_error"] is None


def test_overwritten_blob_fires_again_with_new_etag(toy_app, blob_service):
    host = toy_app.host()
    first = upload(blob_service, toy_app.input_container, "same-name.bin", b"v1")
    host.wait_idle()
    second = upload(blob_service, toy_app.input_container, "same-name.bin", b"v2-longer")
    host.wait_idle()
    assert first != second
    assert [c["etag"] for c in toy_app.calls("blob")] == [first, second]


def test_path_pattern_with_prefix_and_suffix(toy_app, blob_service):
    for name in ["incoming/x.mp4", "incoming/deep/y.mp4", "incoming/z.mp3", "elsewhere/w.mp4"]:
        upload(blob_service, toy_app.input_container, name)
    toy_app.host().wait_idle()
    mp4_calls = [c["name"] for c in toy_app.calls("blob") if c["fn"] == "on_mp4"]
    assert sorted(mp4_calls) == [f"{toy_app.input_container}/incoming/deep/y.mp4",
                                 f"{toy_app.input_container}/incoming/x.mp4"]
    # The catch-all function on the same container keeps its own receipts and sees all four.
    assert len([c for c in toy_app.calls("blob") if c["fn"] == "on_blob"]) == 4


def test_poison_after_five_failures(toy_app, blob_service, queue_service):
    etag = upload(blob_service, toy_app.input_container, "dir/please-fail.bin")
    toy_app.host().wait_idle()
    attempts = [c for c in toy_app.calls("blob") if c["fn"] == "on_blob"]
    assert len(attempts) == 5
    assert toy_app.calls("blob_done") == []
    [message] = poison_messages(queue_service, toy_app.input_container)
    assert message == {"Type": "BlobTrigger", "FunctionId": "Host.Functions.on_blob", "BlobType": "BlockBlob",
                       "ContainerName": toy_app.input_container, "BlobName": "dir/please-fail.bin", "ETag": etag}
    assert receipt_metadata(blob_service, toy_app, "on_blob", etag, toy_app.input_container,
                            "dir/please-fail.bin") == {}
    toy_app.hosts[-1].stop()
    toy_app.host().wait_idle()
    assert len(toy_app.calls("blob")) == 5, "a poisoned blob must not fire again after restart"


def test_dequeue_count_and_plain_encoding_come_from_host_json(make_toy_app, blob_service, queue_service):
    app = make_toy_app(host_json={"version": "2.0", "extensions": {"queues": {"maxDequeueCount": 2,
                                                                               "messageEncoding": "none"}}})
    upload(blob_service, app.input_container, "incoming/fail.mp4")
    app.host().wait_idle()
    attempts = [c for c in app.calls("blob") if c["fn"] == "on_mp4"]
    assert [c["retry_count"] for c in attempts] == [0, 1]
    messages = poison_messages(queue_service, app.input_container, encoded=False)
    assert {m["FunctionId"] for m in messages} == {"Host.Functions.on_blob", "Host.Functions.on_mp4"}


def test_shutdown_mid_invocation_fires_again_after_restart(toy_app, blob_service):
    toy_app.hold_file.touch()
    etag = upload(blob_service, toy_app.input_container, "hold-me.bin")
    host = toy_app.host()
    wait_for(lambda: toy_app.calls("blob"))
    host.stop(grace=0.2)   # the invocation is still blocked: abandoned
    assert receipt_metadata(blob_service, toy_app, "on_blob", etag, toy_app.input_container,
                            "hold-me.bin") == {"Incomplete": "true"}
    toy_app.hold_file.unlink()
    wait_for(lambda: toy_app.calls("blob_done"))  # the abandoned run ends late...
    assert receipt_metadata(blob_service, toy_app, "on_blob", etag, toy_app.input_container,
                            "hold-me.bin") == {"Incomplete": "true"}  # ...without completing the receipt

    toy_app.host().wait_idle()
    assert [c["etag"] for c in toy_app.calls("blob")] == [etag, etag]
    assert receipt_metadata(blob_service, toy_app, "on_blob", etag, toy_app.input_container, "hold-me.bin") == {}


def test_shutdown_waits_for_running_invocation_within_grace(toy_app, blob_service):
    toy_app.hold_file.touch()
    etag = upload(blob_service, toy_app.input_container, "hold-briefly.bin")
    host = toy_app.host()
    wait_for(lambda: toy_app.calls("blob"))
    threading.Timer(0.3, toy_app.hold_file.unlink).start()
    host.stop(grace=10)
    assert len(toy_app.calls("blob_done")) == 1
    assert receipt_metadata(blob_service, toy_app, "on_blob", etag, toy_app.input_container,
                            "hold-briefly.bin") == {}
    toy_app.host().wait_idle()
    assert len(toy_app.calls("blob")) == 1


def test_deleting_a_receipt_forces_reprocessing(toy_app, blob_service):
    etag = upload(blob_service, toy_app.input_container, "again.bin")
    toy_app.host().wait_idle()
    toy_app.hosts[-1].stop()
    blob_service.get_blob_client(
        RECEIPTS, f"blobreceipts/{toy_app.host_id}/Host.Functions.on_blob/{etag}/{toy_app.input_container}/again.bin"
    ).delete_blob()
    toy_app.host().wait_idle()
    assert len(toy_app.calls("blob")) == 2


def test_missing_app_setting_fails_start_and_leaves_no_trace(make_toy_app):
    import os
    import sys

    from devstack.devhost import DevHostError
    app = make_toy_app(extra_settings={"TOY_EG_INPUT": ""})
    modules_before = sys.modules.get("function_app")
    with pytest.raises(DevHostError, match="%TOY_EG_INPUT%"):
        app.host()
    assert "TOY_INPUT" not in os.environ and str(app.dir) not in sys.path
    assert sys.modules.get("function_app") is modules_before


def test_app_settings_are_in_the_environment_only_while_running(toy_app, blob_service):
    import os
    import sys
    assert "TOY_INPUT" not in os.environ
    module_before = sys.modules.get("function_app")   # the product's app, if another test imported it
    host = toy_app.host()
    assert os.environ["TOY_INPUT"] == toy_app.input_container
    assert sys.modules["function_app"].__file__ == str(toy_app.dir / "function_app.py")
    host.stop()
    assert "TOY_INPUT" not in os.environ and sys.modules.get("function_app") is module_before


def test_max_degree_of_parallelism_limits_concurrent_invocations(make_toy_app, blob_service):
    import time
    app = make_toy_app(host_json={"version": "2.0", "extensions": {"blobs": {"maxDegreeOfParallelism": 2}}})
    app.hold_file.touch()
    for index in range(4):
        upload(blob_service, app.input_container, f"hold-{index}.bin")
    host = app.host()
    wait_for(lambda: len(app.calls("blob")) >= 2)
    time.sleep(0.3)   # give a third invocation the chance to start if the limit were not enforced
    assert len(app.calls("blob")) == 2
    app.hold_file.unlink()
    host.wait_idle()
    assert len(app.calls("blob_done")) == 4
