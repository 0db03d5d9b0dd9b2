"""SDK-type blob bindings (azurefunctions-extensions-bindings-blob), as the product's app uses them."""
from __future__ import annotations

import pytest

from .test_blob_polling import upload

pytest.importorskip("azurefunctions.extensions.bindings.blob")
pytestmark = pytest.mark.integration

SDK_APP = '''
import json
import pathlib

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob

app = func.FunctionApp()
CALLS = pathlib.Path({calls!r})


def record(**fields):
    with CALLS.open("a", encoding="utf-8") as out:
        out.write(json.dumps({{"kind": "sdk", **fields}}) + "\\n")


@app.blob_trigger(arg_name="client", path="%TOY_INPUT%/{{name}}", connection="TOY_STORAGE")
def with_client(client: blob.BlobClient):
    props = client.get_blob_properties()
    record(fn="with_client", type=type(client).__module__ + "." + type(client).__name__,
           container=client.container_name, name=client.blob_name, etag=props.etag, size=props.size)


@app.blob_trigger(arg_name="container", path="%TOY_INPUT%/{{name}}", connection="AzureWebJobsStorage")
def with_container(container: blob.ContainerClient):
    record(fn="with_container", container=container.container_name)


@app.blob_trigger(arg_name="stream", path="%TOY_EG_INPUT%/{{name}}", connection="TOY_STORAGE")
def with_downloader(stream: blob.StorageStreamDownloader):
    record(fn="with_downloader", data=stream.readall().decode())
'''


def test_sdk_types_are_built_by_the_extensions_converter(make_toy_app, blob_service):
    app = make_toy_app(app_source=SDK_APP)
    etag = upload(blob_service, app.input_container, "dir/a clip.mp4", b"12345")
    upload(blob_service, app.eventgrid_container, "text.txt", b"hello")
    app.host().wait_idle()
    by_fn = {c["fn"]: c for c in app.calls("sdk")}
    assert by_fn["with_client"] == {"kind": "sdk", "fn": "with_client",
                                    "type": "azure.storage.blob._blob_client.BlobClient",
                                    "container": app.input_container, "name": "dir/a clip.mp4", "etag": etag,
                                    "size": 5}
    assert by_fn["with_container"]["container"] == app.input_container
    assert by_fn["with_downloader"]["data"] == "hello"
