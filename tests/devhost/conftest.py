"""Fixtures for dev host tests: toy apps on the session's Azurite, and storage clients to inspect it."""
from __future__ import annotations

import pytest
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from .toyapp import ToyApp, write_toy_app


@pytest.fixture
def blob_service(storage_connection_string) -> BlobServiceClient:
    with BlobServiceClient.from_connection_string(storage_connection_string) as client:
        yield client


@pytest.fixture
def queue_service(storage_connection_string) -> QueueServiceClient:
    with QueueServiceClient.from_connection_string(storage_connection_string) as client:
        yield client


@pytest.fixture
def make_toy_app(tmp_path, storage_connection_string):
    apps: list[ToyApp] = []

    def make(**kwargs) -> ToyApp:
        app = write_toy_app(tmp_path, storage_connection_string, **kwargs)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.stop_all()


@pytest.fixture
def toy_app(make_toy_app) -> ToyApp:
    return make_toy_app()
