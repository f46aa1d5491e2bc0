"""Protection against other websites: Host header, Origin and binding checks."""

import logging

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from app.cli import warn_if_exposed
from app.security import host_name

FOREIGN_ORIGINS = ["http://evil.example", "null", "http://127.0.0.1:1", "https://localhost.evil"]


def request(server, method, path, headers=None, **kwargs):
    return httpx.request(method, f"{server.url}{path}", headers=headers, timeout=10.0, **kwargs)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.2:{port}"])
def test_foreign_host_header_rejected(module_server, host):
    headers = {"host": host.format(port=module_server.port)}
    response = request(module_server, "GET", "/api/health", headers)
    assert response.status_code == 400
    assert "invalid Host header" in response.json()["detail"]


@pytest.mark.parametrize(
    "host", ["localhost:{port}", "127.0.0.1:{port}", "[::1]:{port}", "LOCALHOST"]
)
def test_own_host_names_accepted(module_server, host):
    headers = {"host": host.format(port=module_server.port)}
    assert request(module_server, "GET", "/api/health", headers).status_code == 200


@pytest.mark.parametrize("origin", FOREIGN_ORIGINS)
def test_foreign_origin_cannot_change_state(module_server, tiny_run_request, origin):
    headers = {"origin": origin}
    response = request(module_server, "POST", "/api/runs", headers, json=tiny_run_request())
    assert response.status_code == 403
    assert "cross-origin" in response.json()["detail"]
    response = request(module_server, "DELETE", "/api/runs/0123456789ab", headers)
    assert response.status_code == 403
    assert request(module_server, "GET", "/api/runs").json() == []


def test_same_origin_and_reads_pass(module_server):
    own = {"origin": module_server.url}
    # Past the origin check, an empty body fails validation instead.
    assert request(module_server, "POST", "/api/runs", own, json={}).status_code == 422
    foreign = {"origin": "http://evil.example"}
    assert request(module_server, "GET", "/api/tasks", foreign).status_code == 200


def test_websocket_with_foreign_origin_rejected(module_server):
    url = f"ws://127.0.0.1:{module_server.port}/ws/runs"
    with pytest.raises(InvalidStatus) as rejected:
        with connect(url, origin="http://evil.example"):
            pass
    assert rejected.value.response.status_code == 403

    with connect(url, origin=module_server.url) as socket:
        assert '"snapshot"' in socket.recv(timeout=10)


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost", "localhost"),
        ("127.0.0.1:8000", "127.0.0.1"),
        ("[::1]:8000", "::1"),
        ("Example.COM", "example.com"),
        ("host:port", None),
        ("[::1", None),
        ("[::1]junk", None),
        ("", None),
        (None, None),
    ],
)
def test_host_name_parsing(header, name):
    assert host_name(header) == name


def test_binding_other_than_loopback_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="app.cli"):
        assert warn_if_exposed("0.0.0.0") is True
    assert "reachable from other machines" in caplog.text
    for host in ("127.0.0.1", "localhost", "::1", "[::1]"):
        assert warn_if_exposed(host) is False
