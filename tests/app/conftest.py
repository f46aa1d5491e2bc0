"""Fixtures for the server tests: a module-wide server and a small client for runs."""

import pytest
from server_helpers import RunsClient


@pytest.fixture(scope="module")
def module_server(tmp_path_factory, start_live_server):
    """One server for every test of a module that does not need a fresh data folder."""
    with start_live_server(tmp_path_factory.mktemp("server") / "data") as server:
        yield server


@pytest.fixture
def runs(live_server) -> RunsClient:
    client = RunsClient(live_server)
    yield client
    client.http.close()


@pytest.fixture(scope="module")
def module_runs(module_server) -> RunsClient:
    client = RunsClient(module_server)
    yield client
    client.http.close()
