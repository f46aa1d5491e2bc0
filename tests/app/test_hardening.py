"""Offline API docs, security headers and origin checks beyond the basic ones, on a live server."""

import base64
import os
import re
import socket

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

FOREIGN = {"origin": "http://evil.example"}


@pytest.fixture(scope="module")
def finished_run(module_runs, tiny_run_request) -> dict:
    run = module_runs.wait_for(module_runs.create(tiny_run_request("lstm"))["id"])
    assert run["status"] == "completed", run["error"]
    return run


def local_references(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


# API docs.


def test_docs_load_nothing_from_other_hosts(module_runs):
    response = module_runs.http.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    references = local_references(response.text)
    assert len(references) >= 3
    for reference in references:
        assert reference.startswith("/"), reference
        assert not reference.startswith("//"), reference
    assert "http://" not in response.text
    assert "https://" not in response.text

    types = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
    for reference in references:
        asset = module_runs.http.get(reference)
        assert asset.status_code == 200, reference
        suffix = reference[reference.rindex(".") :]
        assert asset.headers["content-type"].startswith(types[suffix]), reference
        assert len(asset.content) > 0


def test_docs_script_loads_own_schema(module_runs):
    script = module_runs.http.get("/docs/assets/swagger-init.js").text
    assert "validatorUrl: null" in script
    assert "https://" not in script
    page = module_runs.http.get("/docs").text
    assert 'data-openapi-url="/openapi.json"' in page
    schema = module_runs.http.get("/openapi.json").json()
    assert "/api/runs" in schema["paths"]


def test_cdn_docs_routes_absent(module_runs):
    assert module_runs.http.get("/redoc").status_code == 404
    schema = module_runs.http.get("/openapi.json").json()
    assert not any(path.startswith("/docs") for path in schema["paths"])


# Response headers.


@pytest.mark.parametrize("path", ["/", "/explore", "/compare", "/docs"])
def test_pages_have_content_security_policy(module_runs, path):
    response = module_runs.http.get(path)
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["default-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    port = module_runs.server.port
    assert f"ws://127.0.0.1:{port}" in directives["connect-src"].split()
    assert response.headers["x-frame-options"] == "DENY"


def test_csp_leaves_out_malformed_host(module_runs):
    # Accepted by the Host check ([::1] is a loopback name), but not a valid CSP source.
    response = module_runs.http.get("/", headers={"host": f"[::1]:{module_runs.server.port}"})
    assert response.status_code == 200
    assert "connect-src 'self';" in response.headers["content-security-policy"]


def test_json_has_no_content_security_policy(module_runs):
    response = module_runs.http.get("/api/health")
    assert "content-security-policy" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"


def test_downloads_are_not_sniffed(module_runs, finished_run):
    run_id = finished_run["id"]
    downloads = {
        f"/api/runs/{run_id}/metrics?format=csv": "text/csv; charset=utf-8",
        f"/api/runs/{run_id}/checkpoint": "application/octet-stream",
        f"/api/runs/{run_id}/metrics": "application/json",
        "/static/js/api.js": "text/javascript",
    }
    for path, media_type in downloads.items():
        response = module_runs.http.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith(media_type), path
        assert response.headers["x-content-type-options"] == "nosniff", path
    for path in list(downloads)[:2]:
        disposition = module_runs.http.get(path).headers["content-disposition"]
        assert re.fullmatch(r'attachment; filename="[A-Za-z0-9._-]+"', disposition), disposition


def test_metrics_json_matches_rows(module_runs, finished_run):
    metrics = module_runs.http.get(f"/api/runs/{finished_run['id']}/metrics").json()
    assert [metric["step"] for metric in metrics] == [10, 20, 30, 40]
    assert all(metric["run_id"] == finished_run["id"] for metric in metrics)


# Origin checks on every state-changing method and on websockets.


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_foreign_origin_rejected_for_every_unsafe_method(module_runs, finished_run, method):
    path = f"/api/runs/{finished_run['id']}"
    response = module_runs.http.request(method, path, headers=FOREIGN)
    assert response.status_code == 403
    assert "cross-origin" in response.json()["detail"]
    assert module_runs.http.get(path).status_code == 200


def test_foreign_origin_cannot_cancel(module_runs, tiny_run_request):
    run = module_runs.create(tiny_run_request("lstm", steps=1_000_000, eval_interval=1_000_000))
    response = module_runs.http.post(f"/api/runs/{run['id']}/cancel", headers=FOREIGN)
    assert response.status_code == 403
    assert module_runs.get(run["id"])["status"] in ("queued", "running")
    assert module_runs.http.post(f"/api/runs/{run['id']}/cancel").status_code == 202
    assert module_runs.wait_for(run["id"], timeout=15)["status"] == "cancelled"


def handshake_status(port: int, path: str, host: str) -> int:
    """Send a websocket handshake with the given Host header; return the status code."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request.encode())
        status_line = connection.makefile("rb").readline()
    return int(status_line.split()[1])


def test_run_websocket_checks_origin_and_host(module_runs, finished_run):
    port = module_runs.server.port
    url = f"ws://127.0.0.1:{port}/ws/runs/{finished_run['id']}"
    with pytest.raises(InvalidStatus) as rejected:
        with connect(url, origin="http://evil.example"):
            pass
    assert rejected.value.response.status_code == 403

    path = f"/ws/runs/{finished_run['id']}"
    assert handshake_status(port, path, host=f"evil.example:{port}") == 403
    assert handshake_status(port, path, host=f"127.0.0.1:{port}") == 101

    with connect(url, origin=f"http://127.0.0.1:{port}") as websocket:
        assert '"snapshot"' in websocket.recv(timeout=10)


def test_rejections_are_documented(module_runs):
    paths = module_runs.http.get("/openapi.json").json()["paths"]
    create = paths["/api/runs"]["post"]["responses"]
    assert {"400", "403", "413"} <= set(create)
    listing = paths["/api/runs"]["get"]["responses"]
    assert "403" not in listing
    assert {"400", "413"} <= set(listing)


def test_unknown_run_id_never_reaches_the_file_system(module_runs):
    # Encoded separators and dot segments stay inside the path parameter and fail the
    # run id check before any path is built.
    for run_id in ("..%2F..%2Frelmem.sqlite3", "%2E%2E", "0123456789ab%00"):
        for suffix in ("/checkpoint", "/metrics?format=csv"):
            response = httpx.get(f"{module_runs.server.url}/api/runs/{run_id}{suffix}")
            assert response.status_code == 404, (run_id, suffix)
